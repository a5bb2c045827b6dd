-- Hiring activity per company (its current version in the SCD2 history of silver.companies).
-- Grain: one row per company; companies without open vacancies are kept with zeros.
with companies as (
    select company_id, name, industry, city, size
    from {{ source('silver', 'companies') }}
    where is_current
),

vacancies as (
    select vacancy_id, company_id, city, published_at, remote
    from {{ source('silver', 'vacancies') }}
),

latest as (
    select max(published_at) as last_day from vacancies
)

select
    c.company_id,
    c.name as company_name,
    c.industry,
    c.city,
    c.size,
    count(v.vacancy_id) as open_vacancies,
    count(v.vacancy_id) filter (where v.published_at > l.last_day - 7) as vacancies_last_7d,
    count(v.vacancy_id) filter (where v.remote) as remote_vacancies,
    count(distinct v.city) as hiring_cities,
    min(v.published_at) as first_published_at,
    max(v.published_at) as last_published_at
from companies as c
left join vacancies as v on v.company_id = c.company_id
cross join latest as l
group by c.company_id, c.name, c.industry, c.city, c.size
