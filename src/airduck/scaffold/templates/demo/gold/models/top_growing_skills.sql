-- Skills ranked by growth: vacancies published in the last 7 days (up to the latest publication day)
-- against the 7 days before. Grain: one row per skill.
with vacancies as (
    select
        published_at,
        list_distinct(string_split(skills, ';')) as skill_list
    from {{ source('silver', 'vacancies') }}
    where skills is not null
      and published_at is not null
),

latest as (
    select max(published_at) as last_day from vacancies
),

vacancy_skills as (
    select
        trim(unnest(skill_list)) as skill,
        published_at
    from vacancies
),

counts as (
    select
        s.skill,
        count(*) filter (where s.published_at > l.last_day - 7) as vacancies_last_7d,
        count(*) filter (where s.published_at <= l.last_day - 7 and s.published_at > l.last_day - 14)
            as vacancies_prev_7d,
        count(*) as vacancies_total
    from vacancy_skills as s
    cross join latest as l
    where s.skill <> ''
    group by s.skill
)

select
    skill,
    vacancies_last_7d,
    vacancies_prev_7d,
    vacancies_total,
    vacancies_last_7d - vacancies_prev_7d as growth,
    case
        when vacancies_prev_7d = 0 then null
        else round(100.0 * (vacancies_last_7d - vacancies_prev_7d) / vacancies_prev_7d, 1)
    end as growth_pct,
    cast(row_number() over (order by vacancies_last_7d - vacancies_prev_7d desc, skill) as integer) as growth_rank
from counts
