"""Who the synthetic leads are (companies, people, fit) and the generator's shared primitives.

Everything is drawn column-wise with numpy (no per-lead Python loop), so a million leads
take seconds. Times are float days since the Unix epoch until the tables are assembled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Self

import numpy as np

from features.contract import JOB_LEVELS

SMB, MID_MARKET, ENTERPRISE = 0, 1, 2
MISSING = -1
SECONDS_PER_DAY = 86_400

#: Industry picklist values as CRMs really hold them (variants, casing, junk) and the
#: industry group each belongs to; the group shifts fit (see ``INDUSTRY_GROUP_FIT``).
INDUSTRIES: tuple[tuple[str, int], ...] = (
    *((name, 0) for name in ("Software", "Computer Software", "software", "SaaS",
                             "Software & Internet", "Information Technology and Services",
                             "Information Technology & Services", "IT Services", "Internet",
                             "Computer & Network Security")),
    *((name, 1) for name in ("Financial Services", "Banking", "Insurance", "Fintech",
                             "Finance", "Investment Management", "Accounting")),
    *((name, 2) for name in ("Healthcare", "Hospital & Health Care", "Health Care",
                             "Medical Devices", "Pharmaceuticals", "Biotechnology")),
    *((name, 3) for name in ("Manufacturing", "manufacturing ", "Industrial Automation",
                             "Machinery", "Automotive", "Electrical/Electronic Manufacturing",
                             "Chemicals")),
    *((name, 4) for name in ("Retail", "E-Commerce", "eCommerce", "Consumer Goods",
                             "Apparel & Fashion", "Food & Beverages")),
    *((name, 5) for name in ("Management Consulting", "Consulting", "Legal Services",
                             "Marketing and Advertising", "Staffing and Recruiting",
                             "Human Resources")),
    *((name, 6) for name in ("Education", "Higher Education", "E-Learning",
                             "Government Administration", "Non-Profit",
                             "Nonprofit Organization Management")),
    *((name, 7) for name in ("Telecommunications", "Media", "Real Estate", "Construction",
                             "Logistics and Supply Chain", "Transportation/Trucking/Railroad",
                             "Energy", "Oil & Energy", "Utilities", "Hospitality", "Other",
                             "N/A", "-", "Unknown")),
)  # fmt: skip
INDUSTRY_GROUP_FIT = np.array([0.45, 0.2, 0.0, 0.1, -0.1, 0.0, -0.45, -0.2])

COUNTRIES = ("US", "GB", "DE", "CA", "FR", "AU", "NL", "IN", "SE", "ES", "IT", "BR", "JP",
             "SG", "IE", "CH", "DK", "NO", "BE", "PL", "MX", "ZA", "AE", "IL", "NZ", "AT",
             "FI", "PT")  # fmt: skip
COUNTRY_WEIGHTS = (42, 10, 8, 5, 5, 4, 3, 4, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                   0.5, 0.5, 0.5, 0.5)  # fmt: skip
#: Countries under GDPR-style opt-in rules: most leads there carry an explicit consent row.
OPT_IN_COUNTRIES = frozenset({"GB", "DE", "FR", "NL", "SE", "ES", "IT", "IE", "DK", "BE",
                              "PL", "AT", "FI", "PT", "CH", "NO"})  # fmt: skip

SOURCE_WEIGHTS = (14, 14, 9, 6, 10, 8, 12, 7, 5, 5, 8, 2)  # in LEAD_SOURCES order
SOURCE_FIT = np.array([0.2, -0.1, 0.0, 0.1, 0.0, -0.3, 0.0, -0.1, 0.5, 0.3, -0.2, -0.1])
LEVEL_WEIGHTS = (6, 10, 18, 28, 28, 4, 6)  # in JOB_LEVELS order
LEVEL_FIT = np.array([0.3, 0.4, 0.4, 0.1, -0.2, -1.2, -0.3])
PRODUCT_FIT_FIT = np.array([0.4, 0.0, -0.4])  # ideal, customization, major_investment
TECH_STACKS = ("Salesforce", "HubSpot", "Microsoft Dynamics", "Zoho", "Pipedrive", "None")
TECH_STACK_FIT = np.array([0.1, 0.25, 0.0, -0.05, -0.05, -0.25])

FUNCTIONS = ("Marketing", "Sales", "IT", "Operations", "Finance", "Engineering",
             "Human Resources", "Product", "Customer Success", "Procurement")  # fmt: skip
#: Job-title patterns per job level (JOB_LEVELS order); "{f}" is a business function.
TITLE_PATTERNS: tuple[tuple[str, ...], ...] = (
    ("CEO", "Chief Executive Officer", "Founder & CEO", "Co-Founder", "Owner", "President",
     "CFO", "CTO", "CIO", "COO", "CMO", "Chief Revenue Officer", "Managing Director"),
    ("VP {f}", "VP of {f}", "Vice President, {f}", "Vice President of {f}", "SVP {f}",
     "EVP, {f}", "Head of {f}"),
    ("Director of {f}", "{f} Director", "Sr. Director, {f}", "Senior Director {f}",
     "Director, {f}", "Head of {f}", "Group Director {f}"),
    ("{f} Manager", "Manager, {f}", "Senior {f} Manager", "Sr. Manager {f}", "{f} Team Lead",
     "Lead, {f}", "Program Manager"),
    ("{f} Specialist", "{f} Analyst", "{f} Coordinator", "Senior {f} Specialist",
     "Software Engineer", "Consultant", "{f} Associate", "Administrator", "Developer"),
    ("Student", "MBA Candidate", "Graduate Student", "Intern", "{f} Intern", "PhD Student"),
    ("Other", "Self-employed", "n/a", "-", "Freelancer", "Retired", "Advisor"),
)  # fmt: skip
FAKE_FIRST_NAMES = ("Test", "Sample", "Demo", "Fake", "Placeholder")


@dataclass(frozen=True)
class Columns:
    """A batch of rows held as parallel numpy arrays."""

    def take(self, index: np.ndarray) -> Self:
        """The rows selected by a boolean mask or an index array."""
        return replace(self, **{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @classmethod
    def concat(cls, parts: list[Self]) -> Self:
        """All parts' rows, in order."""
        return cls(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)}
        )

    def __len__(self) -> int:
        return len(getattr(self, fields(self)[0].name))


@dataclass(frozen=True)
class Population:
    """The leads, one array entry per lead, sorted by creation time.

    Codes index the matching vocabulary; ``MISSING`` (-1) marks a value the CRM lacks.
    ``fit`` and ``intent`` are latent: fit is what firmographics and the title say,
    intent is the unobserved buying interest that drives engagement and comebacks.
    """

    created: np.ndarray
    account: np.ndarray
    segment: np.ndarray
    employees: np.ndarray
    revenue: np.ndarray
    industry: np.ndarray
    country: np.ndarray
    source: np.ndarray
    level: np.ndarray
    level_observed: np.ndarray
    title: np.ndarray
    product_fit: np.ndarray
    product_fit_true: np.ndarray
    tech_stack: np.ndarray
    web_sessions: np.ndarray
    fit: np.ndarray
    intent: np.ndarray

    @property
    def size(self) -> int:
        """Number of leads."""
        return len(self.created)


def pick(rng: np.random.Generator, weights: Sequence[float] | np.ndarray, size: int) -> np.ndarray:
    """Draw ``size`` category codes with the given (unnormalised) weights."""
    p = np.asarray(weights, dtype=float)
    cumulative = np.cumsum(p / p.sum())
    codes = np.searchsorted(cumulative, rng.random(size), side="right")
    return np.minimum(codes, len(p) - 1)


def pick_rows(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """Draw one code per row of a (rows, categories) matrix of unnormalised weights."""
    cumulative = np.cumsum(weights, axis=1)
    threshold = rng.random(len(weights)) * cumulative[:, -1]
    codes = (cumulative <= threshold[:, None]).sum(axis=1)
    return np.minimum(codes, weights.shape[1] - 1)


def blank(rng: np.random.Generator, codes: np.ndarray, rate: float) -> np.ndarray:
    """Codes with a share ``rate`` replaced by ``MISSING`` (what the CRM never captured)."""
    return np.where(rng.random(len(codes)) < rate, MISSING, codes)


def office_hours(rng: np.random.Generator, days: np.ndarray) -> np.ndarray:
    """``days`` moved to a time of their own day drawn around 14:00 UTC (sd about 3.4 hours),
    the shape of working-day engagement; never into the next day."""
    return np.floor(days) + np.clip(rng.normal(0.58, 0.14, len(days)), 0.0, 0.999)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function."""
    return 1.0 / (1.0 + np.exp(-x))


def standardize(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance (a constant array stays at zero)."""
    spread = float(x.std())
    return (x - x.mean()) / spread if spread > 0 else x - x.mean()


def next_year_start(days: np.ndarray) -> np.ndarray:
    """The first 1 January strictly after each day (float days since the epoch)."""
    year = np.floor(days).astype("int64").astype("datetime64[D]").astype("datetime64[Y]")
    return (year + 1).astype("datetime64[D]").astype("int64").astype(float)


def next_quarter_start(days: np.ndarray) -> np.ndarray:
    """The first calendar-quarter start strictly after each day."""
    month = np.floor(days).astype("int64").astype("datetime64[D]").astype("datetime64[M]")
    index = month.astype("int64")
    quarter = ((index // 3) + 1) * 3
    return quarter.astype("datetime64[M]").astype("datetime64[D]").astype("int64").astype(float)


def generate_population(
    rng: np.random.Generator, n_leads: int, start: float, end: float
) -> Population:
    """Draw ``n_leads`` leads created between ``start`` and ``end`` (float days)."""
    created = _creation_times(rng, n_leads, start, end)
    accounts = _accounts(rng, max(1, int(0.7 * n_leads)))
    account = _assign_accounts(rng, accounts["segment"], n_leads)
    segment = accounts["segment"][account]
    source = pick(rng, SOURCE_WEIGHTS, n_leads)
    level = pick(rng, LEVEL_WEIGHTS, n_leads)
    product_fit = _product_fit(rng, segment)
    industry, tech = accounts["industry"][account], accounts["tech_stack"][account]
    intent = rng.standard_normal(n_leads)
    fit = standardize(
        LEVEL_FIT[level]
        + PRODUCT_FIT_FIT[product_fit]
        + INDUSTRY_GROUP_FIT[_industry_groups()[industry]]
        + SOURCE_FIT[source]
        + 0.15 * segment
        + np.where(tech >= 0, TECH_STACK_FIT[tech], 0.0)
        + 0.4 * rng.standard_normal(n_leads)
    )
    return Population(
        created=created,
        account=np.where(rng.random(n_leads) < 0.04, MISSING, account),
        segment=segment,
        employees=np.where(rng.random(n_leads) < 0.08, np.nan, accounts["employees"][account]),
        revenue=np.where(rng.random(n_leads) < 0.2, np.nan, accounts["revenue"][account]),
        industry=blank(rng, industry, 0.1),
        country=accounts["country"][account],
        source=source,
        level=level,
        level_observed=blank(rng, level, 0.25),
        title=_titles(rng, level),
        product_fit=blank(rng, product_fit, 0.15),
        product_fit_true=product_fit,
        tech_stack=tech,
        web_sessions=_web_sessions(rng, intent),
        fit=fit,
        intent=intent,
    )


def _creation_times(rng: np.random.Generator, n: int, start: float, end: float) -> np.ndarray:
    # Lead volume grows ~60% over the span (density 1 + g*x on [0, 1], inverted exactly).
    growth = 0.6
    u = rng.random(n)
    x = (np.sqrt(1.0 + growth * (2.0 + growth) * u) - 1.0) / growth
    days = start + x * (end - start)
    created = office_hours(rng, days)
    return np.sort(np.minimum(created, end - 1.0 / SECONDS_PER_DAY))


def _accounts(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    segment = pick(rng, (55, 30, 15), n)
    low = np.array([2.0, 100.0, 1000.0])[segment]
    high = np.array([99.0, 999.0, 50_000.0])[segment]
    employees = np.floor(np.exp(rng.uniform(np.log(low), np.log(high + 1)))).astype(float)
    revenue = np.round(employees * rng.lognormal(np.log(180_000.0), 0.5, n), -3)
    industry = pick(rng, 1.0 / np.arange(1, len(INDUSTRIES) + 1) ** 0.6, n)
    tech_weights = np.array([[18, 30, 8, 12, 14, 18], [35, 25, 15, 8, 5, 12],
                             [55, 10, 25, 3, 1, 6]], dtype=float)  # fmt: skip
    tech_stack = blank(rng, pick_rows(rng, tech_weights[segment]), 0.3)
    return {
        "segment": segment,
        "employees": employees,
        "revenue": revenue,
        "industry": industry,
        "country": blank(rng, pick(rng, COUNTRY_WEIGHTS, n), 0.03),
        "tech_stack": tech_stack,
    }


def _assign_accounts(rng: np.random.Generator, segment: np.ndarray, n_leads: int) -> np.ndarray:
    # Bigger companies produce more leads; every account gets at least one lead when it can.
    n_accounts = len(segment)
    first = rng.permutation(n_accounts)[: min(n_accounts, n_leads)]
    extra = pick(rng, 1.0 + 2.0 * segment, n_leads - len(first))
    return rng.permutation(np.concatenate([first, extra]))


def _product_fit(rng: np.random.Generator, segment: np.ndarray) -> np.ndarray:
    weights = np.array([[50, 30, 20], [40, 38, 22], [30, 45, 25]], dtype=float)
    return pick_rows(rng, weights[segment])


def _industry_groups() -> np.ndarray:
    return np.array([group for _, group in INDUSTRIES])


def _web_sessions(rng: np.random.Generator, intent: np.ndarray) -> np.ndarray:
    # A custom CRM field (website sessions in the last 12 months): a noisy view of intent.
    n = len(intent)
    sessions = rng.poisson(np.exp(1.6 + 0.45 * intent + 0.6 * rng.standard_normal(n)))
    return np.where(rng.random(n) < 0.15, np.nan, sessions.astype(float))


def _title_table() -> np.ndarray:
    widest = max(len(patterns) for patterns in TITLE_PATTERNS)
    table = np.full((len(JOB_LEVELS), widest, len(FUNCTIONS), 3), None, dtype=object)
    for level, patterns in enumerate(TITLE_PATTERNS):
        for p, pattern in enumerate(patterns):
            for f, function in enumerate(FUNCTIONS):
                title = pattern.format(f=function)
                table[level, p, f] = (title, title.lower(), title.upper())
    return table


def _titles(rng: np.random.Generator, level: np.ndarray) -> np.ndarray:
    n = len(level)
    counts = np.array([len(patterns) for patterns in TITLE_PATTERNS])
    pattern = np.floor(rng.random(n) * counts[level]).astype(int)
    function = rng.integers(0, len(FUNCTIONS), n)
    casing = pick(rng, (90, 6, 4), n)
    titles = _title_table()[level, pattern, function, casing]
    titles[rng.random(n) < 0.07] = None
    return titles
