-- Salary ranges per skill, city and month of publication.
-- Grain: one row per (skill, city, month). Salaries are yearly, in the city's currency.
with vacancies as (
    select
        vacancy_id,
        city,
        currency,
        cast(date_trunc('month', published_at) as date) as month,
        salary_from,
        salary_to,
        list_distinct(string_split(skills, ';')) as skill_list
    from {{ source('silver', 'vacancies') }}
    where skills is not null
      and city is not null
      and published_at is not null
),

vacancy_skills as (
    select
        vacancy_id,
        trim(unnest(skill_list)) as skill,
        city,
        currency,
        month,
        salary_from,
        salary_to
    from vacancies
)

select
    skill,
    city,
    month,
    any_value(currency) as currency,
    count(*) as vacancies,
    count(salary_from) as vacancies_with_salary,
    round(avg(salary_from), 2) as avg_salary_from,
    round(avg(salary_to), 2) as avg_salary_to,
    round(median((salary_from + salary_to) / 2), 2) as median_salary_mid
from vacancy_skills
where skill <> ''
group by skill, city, month
