"""Caps on paid calls (requests, tokens, dollars), reserved before sending so no concurrency overshoots."""

from __future__ import annotations

from dataclasses import dataclass

from lema.config import BudgetConfig, PriceConfig


class BudgetExceeded(RuntimeError):
    pass


@dataclass(frozen=True)
class Amount:
    """What the budget counts: paid responses, tokens, dollars."""

    requests: int = 0
    tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Amount) -> Amount:
        return Amount(self.requests + other.requests, self.tokens + other.tokens, self.cost_usd + other.cost_usd)

    def __sub__(self, other: Amount) -> Amount:
        return Amount(self.requests - other.requests, self.tokens - other.tokens, self.cost_usd - other.cost_usd)


class Budget:
    """Caps on paid responses.  A request reserves its worst case before it is sent and settles to what was
    billed after, so spent + in flight never passes a cap however many requests run at once."""

    def __init__(self, caps: BudgetConfig, price: PriceConfig | None = None, model: str | None = None):
        if caps.max_cost_usd is not None and price is None:
            raise ValueError(f"corrector.budget.max_cost_usd is set but corrector.prices has no entry for model "
                             f"{model!r}: add its price (US dollars per million tokens)")
        self.caps = caps
        self.price = price
        self.spent = Amount()
        self.reserved = Amount()

    def cost(self, prompt_tokens: int, completion_tokens: int, discount: float = 1.0) -> float:
        if self.price is None:
            return 0.0
        return discount * (prompt_tokens * self.price.input + completion_tokens * self.price.output) / 1e6

    def amount(self, prompt_tokens: int, completion_tokens: int, discount: float = 1.0) -> Amount:
        return Amount(1, prompt_tokens + completion_tokens, self.cost(prompt_tokens, completion_tokens, discount))

    @property
    def in_flight(self) -> bool:
        return self.reserved.requests > 0

    def over(self, extra: Amount) -> str | None:
        """The cap that spent + reserved + extra would pass, in words; None if all hold."""
        c, total = self.caps, self.spent + self.reserved + extra
        if c.max_requests is not None and total.requests > c.max_requests:
            return f"request cap {c.max_requests} reached"
        if c.max_tokens is not None and total.tokens > c.max_tokens:
            return (f"token cap {c.max_tokens} reached ({self.spent.tokens} spent, {self.reserved.tokens} in "
                    f"flight, next request up to {extra.tokens})")
        if c.max_cost_usd is not None and total.cost_usd > c.max_cost_usd + 1e-12:
            return (f"cost cap ${c.max_cost_usd} reached (${self.spent.cost_usd:.6f} spent, "
                    f"${self.reserved.cost_usd:.6f} in flight, next request up to ${extra.cost_usd:.6f})")
        return None

    def reserve(self, amount: Amount) -> None:
        reason = self.over(amount)
        if reason is not None:
            raise BudgetExceeded(reason)
        self.reserved += amount

    def settle(self, reserved: Amount, actual: Amount) -> None:
        self.reserved -= reserved
        self.spent += actual


def share_of(caps: BudgetConfig, shards: int) -> BudgetConfig:
    """One shard's part of a stage's caps, so that shards run side by side never pass the stage's cap together."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    return BudgetConfig(max_requests=None if caps.max_requests is None else caps.max_requests // shards,
                        max_tokens=None if caps.max_tokens is None else caps.max_tokens // shards,
                        max_cost_usd=None if caps.max_cost_usd is None else caps.max_cost_usd / shards)
