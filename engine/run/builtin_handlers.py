"""The automatic steps of the process library in process_defs/.

Each handler is registered on the default registry under the name the definitions use
(`handler: complaints.detect_major`). The rules follow the source documents (see
/work/shared/PROCESSES.md); every number they use comes from the definition's `parameters:`
so an administrator can change a threshold without a release.

Why they look the way they do:
- A handler may run more than once for the same step (a worker dies after the work, before the
  commit), so it must be idempotent: it only reads `ctx.data` and `ctx.params`, never the clock,
  the network or a random source, and any identifier it creates is derived from
  `ctx.idempotency_key`, which is the same on every re-run of the same step.
- Form values arrive as JSON (an integer where a number was meant, a missing optional field),
  so inputs are read through small tolerant helpers instead of `ctx.data[...]`.
- Outputs are plain JSON values matching the `outputs:` declared on the step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from engine.run.handlers import HandlerContext, registry

# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def _num(data: Mapping[str, Any], key: str, default: float = 0.0) -> float:
    """A number from case data; None, "" and unreadable values count as the default."""
    value = data.get(key)
    if value is None or value == "" or isinstance(value, bool):
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _flag(data: Mapping[str, Any], key: str) -> bool:
    value = data.get(key)
    if isinstance(value, str):
        return value.strip().lower() in {"true", "yes", "1", "y", "是"}
    return bool(value)


def _text(data: Mapping[str, Any], key: str, default: str = "") -> str:
    value = data.get(key)
    return default if value is None else str(value)


def _param(params: Mapping[str, Any], key: str, default: Any) -> Any:
    value = params.get(key)
    return default if value is None else value


def _record_id(prefix: str, ctx: HandlerContext) -> str:
    """A stable record id: the same step re-run yields the same id, so no duplicate record appears."""
    digest = hashlib.sha256(ctx.idempotency_key.encode("utf-8")).hexdigest()[:12].upper()
    return f"{prefix}-{digest}"


def _clamp(value: float, low: float = 0.0, high: float = 100.0) -> float:
    return max(low, min(high, value))


def _linear(value: float, worst: float, best: float) -> float:
    """Score 0..100 growing linearly from `worst` to `best` (either direction)."""
    if best == worst:
        return 100.0 if value >= best else 0.0
    return _clamp(100.0 * (value - worst) / (best - worst))


# ----------------------------------------------------------------------------------------------
# complaint_handling
# ----------------------------------------------------------------------------------------------

MAJOR_FLAGS: tuple[tuple[str, str], ...] = (
    ("is_vip", "vip_customer"),
    ("is_official", "government_official"),
    ("is_celebrity", "celebrity"),
    ("is_journalist", "journalist"),
    ("strong_emotion", "strong_emotion"),
    ("media_threat", "media_threat"),
)


@registry.register("complaints.detect_major")
def detect_major(ctx: HandlerContext) -> dict[str, Any]:
    """Identify a major complaint (重大投诉的识别, seeds/001).

    Major when the complainant is a VIP (big spender, government official, celebrity,
    journalist), is very upset, claims a high compensation, threatens media exposure, or
    complains about the same matter for the n-th time. Every reason found is returned, so
    the owner and the weekly report can see *why* a case went to the crisis path.
    """
    data, params = ctx.data, ctx.params
    reasons: list[str] = []
    vip_tiers = list(_param(params, "major_vip_tiers", []))
    if _text(data, "tier") in vip_tiers and not _flag(data, "is_vip"):
        reasons.append("vip_customer")
    for key, reason in MAJOR_FLAGS:
        if _flag(data, key):
            reasons.append(reason)
    threshold = float(_param(params, "major_compensation_threshold", 10000))
    if _num(data, "claimed_compensation") >= threshold > 0:
        reasons.append("high_compensation_claim")
    repeat_limit = int(_param(params, "major_repeat_count", 3))
    if _num(data, "repeat_count", 1) >= repeat_limit > 0:
        reasons.append("repeat_complaint")
    return {"is_major": bool(reasons), "major_reasons": reasons}


@registry.register("complaints.hand_over_major")
def hand_over_major(ctx: HandlerContext) -> dict[str, Any]:
    """Hand the complaint over to major-complaint handling (一般投诉转为重大投诉, seeds/001).

    Three roads lead here: detection at registration (the reasons are already known), the
    supervisor referring it after the reply rounds ran out, or the handling limit missed twice
    over (投诉升级). The road taken is added to the reasons so the crisis team and the weekly
    report see why an ordinary complaint became a major one. The complaint's own clocks stop
    when this step completes; the child case's clocks take over.
    """
    data = ctx.data
    reasons = [str(r) for r in data.get("major_reasons") or []]
    if not _flag(data, "is_major"):
        road = "supervisor_referral" if _text(data, "supervisor_decision") == "refer_major" else "overdue_escalation"
        if road not in reasons:
            reasons.append(road)
    return {"is_major": True, "major_reasons": reasons, "progress": "major_handling"}


# ----------------------------------------------------------------------------------------------
# big_client_visit
# ----------------------------------------------------------------------------------------------


@registry.register("visits.load_archive")
def load_archive(ctx: HandlerContext) -> dict[str, Any]:
    """Prepare a visit from the customer archive: grade the client and write a briefing.

    Big client per the railway rule of seeds/004 (over 1 Mt a year or over 100 M yuan
    freight); core / key / general grading by volume, revenue and plan fulfilment. The
    archive figures are the case data (loaded when the case starts), so the step is pure.
    """
    data, params = ctx.data, ctx.params
    tonnes = _num(data, "annual_volume_tonnes")
    freight = _num(data, "annual_freight_yuan")
    fulfilment = _num(data, "fulfilment_rate", 1.0)
    is_big = tonnes >= float(_param(params, "big_client_min_tonnes", 1_000_000)) or freight >= float(
        _param(params, "big_client_min_freight_yuan", 100_000_000)
    )
    core_rate = float(_param(params, "core_min_fulfilment_rate", 0.95))
    if is_big and fulfilment >= core_rate:
        grade = "core"
    elif is_big or tonnes >= float(_param(params, "key_client_min_tonnes", 300_000)):
        grade = "key"
    else:
        grade = "general"
    focus: list[str] = []
    open_complaints = int(_num(data, "open_complaints"))
    if open_complaints:
        focus.append(f"open_complaints:{open_complaints}")
    if fulfilment < core_rate:
        focus.append("plan_fulfilment_below_target")
    if is_big:
        focus.append("capacity_priority_for_big_client")
    if not focus:
        focus.append("relationship_maintenance")
    name = _text(data, "customer_name") or _text(data, "customer_id")
    briefing = (
        f"{name}: grade {grade}, {tonnes:,.0f} t / {freight:,.0f} yuan a year, "
        f"fulfilment {fulfilment:.0%}, open complaints {open_complaints}."
    )
    last = _text(data, "last_visit_notes")
    if last:
        briefing += f" Last visit: {last}"
    return {"client_grade": grade, "is_big_client": is_big, "briefing": briefing, "visit_focus": focus}


@registry.register("visits.update_archive")
def update_archive_after_visit(ctx: HandlerContext) -> dict[str, Any]:
    """Write the visit into the customer archive; the record id is derived from the step's key.

    Re-running the step returns the same record id, so an archive writer keyed on it stores
    the visit once. The next visit is due after the tier's interval (parameters).
    """
    intervals = _param(ctx.params, "visit_interval_days", {})
    tier = _text(ctx.data, "tier", "standard")
    return {
        "archive_record_id": _record_id("VA", ctx),
        "next_visit_in_days": int(intervals.get(tier, 365)) if isinstance(intervals, Mapping) else 365,
    }


# ----------------------------------------------------------------------------------------------
# big_client_return_visit
# ----------------------------------------------------------------------------------------------

SERVQUAL: tuple[str, ...] = ("reliability", "responsiveness", "assurance", "empathy", "tangibles")
# which complaint category a weak dimension points at (complaint_handling's categories)
DIMENSION_CATEGORY: dict[str, str] = {
    "reliability": "service_quality",
    "responsiveness": "response_delay",
    "assurance": "service_attitude",
    "empathy": "service_attitude",
    "tangibles": "service_quality",
}


@registry.register("surveys.evaluate_servqual")
def evaluate_servqual(ctx: HandlerContext) -> dict[str, Any]:
    """Score the five service-quality dimensions of seeds/001 and decide the follow-up.

    Low when the average is below the limit or any one dimension is very low. A low score
    from a customer who is thinking of leaving becomes a retention case; otherwise a
    complaint, categorised by the weakest dimension.
    """
    data, params = ctx.data, ctx.params
    scores = {name: _num(data, name, 0.0) for name in SERVQUAL}
    average = round(sum(scores.values()) / len(scores), 2)
    lowest = min(SERVQUAL, key=lambda name: (scores[name], SERVQUAL.index(name)))
    low = average < float(_param(params, "low_average_below", 3.5)) or scores[lowest] <= float(
        _param(params, "low_dimension_at_or_below", 2)
    )
    if not low:
        follow_up = "none"
    elif _flag(data, "considering_leaving"):
        follow_up = "retention"
    else:
        follow_up = "complaint"
    return {
        "average_score": average,
        "lowest_dimension": lowest,
        "low_score": low,
        "follow_up": follow_up,
        "complaint_category": DIMENSION_CATEGORY[lowest],
    }


# ----------------------------------------------------------------------------------------------
# credit_rating, credit_rating_change
# ----------------------------------------------------------------------------------------------

RATINGS: tuple[str, ...] = ("AAA", "AA", "A", "BBB", "BB", "B", "C")
DEFAULT_WEIGHTS: dict[str, float] = {
    "profitability": 0.2, "liquidity": 0.2, "leverage": 0.2, "payment_history": 0.3, "relationship": 0.1,
}
DEFAULT_FLOORS: dict[str, float] = {"AAA": 90, "AA": 80, "A": 70, "BBB": 60, "BB": 50, "B": 40}


def credit_components(data: Mapping[str, Any]) -> dict[str, float]:
    """The five component scores (0-100) from the collected financial data and payment record."""
    revenue = _num(data, "annual_revenue")
    margin = _num(data, "net_profit") / revenue if revenue > 0 else 0.0
    current_liabilities = _num(data, "current_liabilities")
    current_assets = _num(data, "current_assets")
    if current_liabilities > 0:
        liquidity = _linear(current_assets / current_liabilities, 0.5, 2.0)
    else:
        liquidity = 100.0 if current_assets > 0 else 50.0
    assets = _num(data, "total_assets")
    leverage = _linear(_num(data, "total_liabilities") / assets, 0.9, 0.3) if assets > 0 else 0.0
    payment = _clamp(100.0 * _num(data, "on_time_payment_rate", 1.0)
                     - min(40.0, 0.5 * _num(data, "max_overdue_days")))
    return {
        "profitability": round(_linear(margin, 0.0, 0.15), 1),
        "liquidity": round(liquidity, 1),
        "leverage": round(leverage, 1),
        "payment_history": round(payment, 1),
        "relationship": round(_clamp(20.0 * _num(data, "relationship_years")), 1),
    }


def rating_for(score: float, floors: Mapping[str, Any]) -> str:
    """The best rating whose floor the score reaches; below every floor, C."""
    for rating in RATINGS[:-1]:
        floor = floors.get(rating)
        if floor is not None and score >= float(floor):
            return rating
    return "C"


@registry.register("credit.score_credit")
def score_credit(ctx: HandlerContext) -> dict[str, Any]:
    """Assess and score a customer's credit (评估认定客户信用, seeds/001; seeds/004 第4篇).

    A weighted sum of profitability (net margin), liquidity (current ratio), leverage (debt
    ratio), payment history (on-time rate, longest overdue) and length of relationship; the
    weights, the rating floors and the limit-to-revenue shares are parameters. An external
    blacklist entry caps the result at C whatever the figures say.
    """
    data, params = ctx.data, ctx.params
    weights = {**DEFAULT_WEIGHTS, **dict(_param(params, "score_weights", {}))}
    components = credit_components(data)
    total_weight = sum(float(w) for w in weights.values()) or 1.0
    score = round(sum(components[k] * float(weights.get(k, 0)) for k in components) / total_weight, 1)
    blacklisted = _flag(data, "external_blacklisted")
    if blacklisted:
        score = min(score, 30.0)
    rating = "C" if blacklisted else rating_for(score, dict(_param(params, "rating_floors", DEFAULT_FLOORS)))
    shares = dict(_param(params, "limit_share_of_revenue", {}))
    limit = round(_num(data, "annual_revenue") * float(shares.get(rating, 0.0)), -3)
    explanation = ", ".join(f"{k} {v:g}×{float(weights.get(k, 0)):g}" for k, v in components.items())
    if blacklisted:
        explanation += "; external blacklist: capped at C"
    return {
        "credit_score": score,
        "suggested_rating": rating,
        "suggested_limit": float(limit),
        "score_explanation": explanation,
    }


@registry.register("credit.publish_rating")
def publish_rating(ctx: HandlerContext) -> dict[str, Any]:
    """Publish the approved rating (公布客户信用); the record id is stable across re-runs."""
    return {
        "rating_record_id": _record_id("CR", ctx),
        "published_rating": _text(ctx.data, "proposed_rating", "C"),
        "published_limit": _num(ctx.data, "proposed_limit"),
    }


@registry.register("credit.compare_ratings")
def compare_ratings(ctx: HandlerContext) -> dict[str, Any]:
    """Decide who must approve a rating change (approval by level, seeds/001 list 6.7).

    A downgrade by `manager_downgrade_grades` or more, an upgrade into the top ratings, or a
    new limit above `manager_limit_above` needs the credit manager; anything else needs a
    second person (the reviewer). `grades_moved` is positive for an upgrade.
    """
    data, params = ctx.data, ctx.params
    old = _text(data, "current_rating", "C")
    new = _text(data, "new_rating", old)
    old_index = RATINGS.index(old) if old in RATINGS else len(RATINGS) - 1
    new_index = RATINGS.index(new) if new in RATINGS else len(RATINGS) - 1
    moved = old_index - new_index
    needs_manager = (
        -moved >= int(_param(params, "manager_downgrade_grades", 2))
        or (moved > 0 and new in list(_param(params, "manager_ratings", [])))
        or _num(data, "new_limit") > float(_param(params, "manager_limit_above", float("inf")))
    )
    return {"grades_moved": moved, "is_downgrade": moved < 0, "needs_manager": bool(needs_manager)}


@registry.register("credit.update_archive")
def update_credit_archive(ctx: HandlerContext) -> dict[str, Any]:
    """Record the new rating in the customer archive; the same step always yields the same id."""
    return {"archive_record_id": _record_id("CA", ctx)}


# ----------------------------------------------------------------------------------------------
# customer_retention
# ----------------------------------------------------------------------------------------------


def lifetime_value(monthly_margin: float, months: int, monthly_rate: float) -> float:
    """Present value of the margin the customer still brings (annuity of `months` payments)."""
    if months <= 0 or monthly_margin <= 0:
        return 0.0
    if monthly_rate <= 0:
        return monthly_margin * months
    return monthly_margin * (1 - (1 + monthly_rate) ** -months) / monthly_rate


@registry.register("retention.assess_value")
def assess_value(ctx: HandlerContext) -> dict[str, Any]:
    """Profitability check (客户盈利能力评估, seeds/002): lifetime value against retention cost.

    Worth retaining when the value an offer is expected to save (lifetime value times the
    success rate) covers the retention budget of the customer's tier. The suggested offer
    also follows the tier.
    """
    data, params = ctx.data, ctx.params
    margin = _num(data, "monthly_revenue") * _num(data, "gross_margin_rate", 0.3)
    ltv = lifetime_value(margin, int(_num(data, "expected_tenure_months", 24)),
                         float(_param(params, "monthly_discount_rate", 0.01)))
    tier = _text(data, "tier", "standard")
    budgets = dict(_param(params, "retention_budget_by_tier", {}))
    cost = float(budgets.get(tier, 1000))
    success = float(_param(params, "retention_success_rate", 0.5))
    offers = dict(_param(params, "offer_by_tier", {}))
    return {
        "lifetime_value": round(ltv, 2),
        "estimated_retention_cost": round(cost, 2),
        "worth_retaining": ltv > 0 and ltv * success >= cost,
        "suggested_offer": str(offers.get(tier, "loyalty_gift")),
    }


# ----------------------------------------------------------------------------------------------
# after_sales_repair
# ----------------------------------------------------------------------------------------------


@registry.register("repair.classify_fault")
def classify_fault(ctx: HandlerContext) -> dict[str, Any]:
    """Classify a reported fault (故障定位与分类, seeds/000 95598).

    Critical: a safety hazard or many households without supply; major: an outage or damaged
    equipment, or a sizeable number of households; otherwise minor. The specialty the crew
    needs follows the fault type (parameters).
    """
    data, params = ctx.data, ctx.params
    fault = _text(data, "fault_type", "other")
    households = _num(data, "affected_households", 1)
    reasons: list[str] = []
    if _flag(data, "safety_risk") or fault == "safety_hazard":
        severity = "critical"
        reasons.append("safety risk")
    elif households >= float(_param(params, "critical_households", 100)):
        severity = "critical"
        reasons.append(f"{households:.0f} households affected")
    elif fault in ("outage", "equipment_damage") or households >= float(_param(params, "major_households", 10)):
        severity = "major"
        reasons.append(f"{fault}, {households:.0f} households")
    else:
        severity = "minor"
        reasons.append(f"{fault}, {households:.0f} households")
    specialties = dict(_param(params, "fault_specialty", {}))
    specialty = str(specialties.get(fault, "general"))
    return {"severity": severity, "specialty": specialty, "classification_reason": "; ".join(reasons)}


@registry.register("repair.route_to_crew")
def route_to_crew(ctx: HandlerContext) -> dict[str, Any]:
    """Route the repair by location and type (根据故障地点、性质通知相关抢修部门, seeds/000).

    The crew table of the district (or the default table) gives the crew for the specialty;
    a district without that specialty falls back to its general crew.
    """
    data, params = ctx.data, ctx.params
    district = _text(data, "district").strip().lower()
    specialty = _text(data, "specialty", "general")
    crews_by_district = dict(_param(params, "crews", {}))
    default_crews = dict(_param(params, "default_crews", {}))
    table = crews_by_district.get(district)
    source = f"district {district}"
    if not isinstance(table, Mapping):
        table, source = default_crews, "default crews"
    crew = table.get(specialty) or table.get("general") or default_crews.get("general") or "central_general_1"
    return {"crew_id": str(crew), "route_reason": f"{source}, specialty {specialty}"}


HANDLER_NAMES: Sequence[str] = (
    "complaints.detect_major",
    "complaints.hand_over_major",
    "visits.load_archive",
    "visits.update_archive",
    "surveys.evaluate_servqual",
    "credit.score_credit",
    "credit.publish_rating",
    "credit.compare_ratings",
    "credit.update_archive",
    "retention.assess_value",
    "repair.classify_fault",
    "repair.route_to_crew",
)
