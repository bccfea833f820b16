"""The cost engine: prices from `genai-prices`, resolved once per model, computed in microseconds.

`genai_prices.calc_price` resolves the model and walks its unit registry in
`Decimal` on every call (~60–130 µs). We resolve a `(provider, model)` once,
turn its prices into float rates per token, and cache them; a call's cost is
then a few multiplications with the same result (tiers, date-conditional
prices and per-request prices included; `tests/test_pricing.py` compares the
two across the whole database).

How a call is priced (`PriceBook.price`, on the pipeline's worker):

- by the model the *response* names when there is one (an Azure deployment
  name is not a model; the response says `gpt-4o-2024-08-06`), else the
  requested model;
- custom prices (`prices=` / `[prices]`) first, then genai-prices for the
  record's provider, then for the provider the model name implies; a call with
  no provider is matched across the whole database;
- `model_aliases` maps names that are not models (deployments, proxies) to
  models; `provider/model` prefixes (LiteLLM, OpenRouter style) name the provider;
- token rules as the record's: cached tokens are part of `input_tokens` and
  priced at the cache rate when the model has one (else at the input rate);
  reasoning tokens are part of `output_tokens`;
- no known price: `cost_usd` stays `None` (never 0), counted and logged once
  per model; a failed call that reported no usage costs 0 (providers do not
  bill a refused request); a record whose cost is already set is left alone.
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from . import log
from .errors import ConfigError
from .record import LLMCall
from .semconv import infer_provider, normalize_provider

__all__ = ["Cost", "PriceBook", "Rates", "Tiered", "cost", "parse_prices", "parse_model_aliases", "default_book", "use_book", "active_book", "prepare", "after_fork_in_child"]

# Our provider names -> genai-prices provider ids, in the order to try.
GENAI_PROVIDERS: dict[str, tuple[str, ...]] = {
    "openai": ("openai",),
    "azure.ai.openai": ("azure", "openai"),
    "azure.ai.inference": ("azure",),
    "anthropic": ("anthropic",),
    "aws.bedrock": ("aws",),
    "gcp.vertex_ai": ("google",),
    "gcp.gemini": ("google",),
    "gcp.gen_ai": ("google",),
    "cohere": ("cohere",),
    "groq": ("groq",),
    "mistral_ai": ("mistral",),
    "deepseek": ("deepseek",),
    "x_ai": ("x-ai",),
    "perplexity": ("perplexity",),
    "together": ("together",),
    "fireworks": ("fireworks",),
    "openrouter": ("openrouter",),
    "cerebras": ("cerebras",),
    "voyage": ("voyageai",),
    "cloudflare": ("cloudflare",),
    "databricks": ("databricks",),
    "novita": ("novita",),
    "moonshotai": ("moonshotai",),
    "minimax": ("minimax",),
}
_CUSTOM_KEYS = ("input", "output", "cache_read", "cache_write")


@dataclass(frozen=True)
class Cost:
    """The price of one call, in USD."""

    total_usd: float
    input_usd: float
    output_usd: float
    model: str
    provider: str
    source: str  # "custom" or "genai-prices <version>"


class Tiered:
    """A per-token rate that changes with the call's total input tokens ("cliff" tiers, as genai-prices)."""

    __slots__ = ("base", "tiers")

    def __init__(self, base: float, tiers: list[tuple[int, float]]) -> None:
        self.base = base
        self.tiers = sorted(tiers, reverse=True)  # highest threshold first

    def at(self, total_input: int) -> float:
        for start, price in self.tiers:
            if total_input > start:
                return price
        return self.base


class Rates:
    """USD per token (or per request) for one model at one time; `None` where the model has no such price."""

    __slots__ = ("input", "output", "cache_read", "cache_write", "reasoning", "request", "model", "provider", "source")

    def __init__(self, model: str, provider: str, source: str, **rates: Any) -> None:
        self.model, self.provider, self.source = model, provider, source
        for key in ("input", "output", "cache_read", "cache_write", "reasoning", "request"):
            setattr(self, key, rates.get(key))

    def compute(self, input_tokens: int, output_tokens: int, cache_read: int, cache_write: int, reasoning: int) -> tuple[float, float, float] | None:
        """(input, output, total) USD; `None` for counts that contradict each other (cached > input)."""
        input_leaf, output_leaf = input_tokens, output_tokens
        if self.cache_read is not None:
            input_leaf -= cache_read
        if self.cache_write is not None:
            input_leaf -= cache_write
        if self.reasoning is not None:
            output_leaf -= reasoning
        if input_leaf < 0 or output_leaf < 0:
            return None

        # Each rate a float, or Tiered (by the call's whole input); a count of 0 costs nothing. Written
        # out rather than through a helper: this runs for every record, and most counts are 0.
        input_usd = output_usd = 0.0
        if input_leaf and (rate := self.input) is not None:
            input_usd = (rate if type(rate) is float else rate.at(input_tokens)) * input_leaf
        if cache_read and (rate := self.cache_read) is not None:
            input_usd += (rate if type(rate) is float else rate.at(input_tokens)) * cache_read
        if cache_write and (rate := self.cache_write) is not None:
            input_usd += (rate if type(rate) is float else rate.at(input_tokens)) * cache_write
        if output_leaf and (rate := self.output) is not None:
            output_usd = (rate if type(rate) is float else rate.at(input_tokens)) * output_leaf
        if reasoning and (rate := self.reasoning) is not None:
            output_usd += (rate if type(rate) is float else rate.at(input_tokens)) * reasoning
        return input_usd, output_usd, input_usd + output_usd + (self.request or 0.0)


class _GenaiModel:
    """A genai-prices model, its rates per price period built once."""

    __slots__ = ("info", "provider_id", "standard", "conditional")

    def __init__(self, info: Any, provider_id: str, version: str) -> None:
        from genai_prices.types import ModelPrice

        self.info, self.provider_id = info, provider_id
        source = f"genai-prices {version}"
        if isinstance(info.prices, ModelPrice):
            self.standard = _rates_from_genai(info.prices, info.id, provider_id, source)
            self.conditional: list[tuple[Any, Rates]] = []
        else:
            self.standard = _rates_from_genai(info.prices[0].prices, info.id, provider_id, source)
            self.conditional = [(c.constraint, _rates_from_genai(c.prices, info.id, provider_id, source)) for c in info.prices]

    def rates(self, when: datetime | None) -> Rates:
        if not self.conditional:
            return self.standard
        when = when or datetime.now(timezone.utc)
        for constraint, rates in reversed(self.conditional):  # the last active price wins
            if constraint is None or constraint.active(when):
                return rates
        return self.standard


def _per_token(value: Any, per: int) -> Any:
    from genai_prices.types import TieredPrices

    if value is None:
        return None
    if isinstance(value, TieredPrices):
        return Tiered(float(value.base) / per, [(t.start, float(t.price) / per) for t in value.tiers])
    return float(value) / per


def _rates_from_genai(price: Any, model: str, provider: str, source: str) -> Rates:
    return Rates(
        model,
        provider,
        source,
        input=_per_token(getattr(price, "input_mtok", None), 1_000_000),
        output=_per_token(getattr(price, "output_mtok", None), 1_000_000),
        cache_read=_per_token(getattr(price, "cache_read_mtok", None), 1_000_000),
        cache_write=_per_token(getattr(price, "cache_write_mtok", None), 1_000_000),
        reasoning=_per_token(getattr(price, "output_reasoning_mtok", None), 1_000_000),
        request=_per_token(getattr(price, "requests_kcount", None), 1_000),
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def parse_prices(name: str, value: Any, source: str) -> dict[str, Rates]:
    """Custom prices: `{model: {input, output, cache_read, cache_write}}` in USD per million tokens."""
    accepted = "a table of model -> {input, output, cache_read, cache_write} in USD per million tokens"
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"tokentrail: bad value for `{name}` from {source}: {value!r}; accepted: {accepted}")
    out: dict[str, Rates] = {}
    for model, entry in value.items():
        where = f"`{name}` entry {model!r} from {source}"
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"tokentrail: bad model name {model!r} in `{name}` from {source}")
        if not isinstance(entry, Mapping):
            raise ConfigError(f"tokentrail: bad {where}: {entry!r}; accepted: {accepted}")
        unknown = set(entry) - set(_CUSTOM_KEYS)
        if unknown:
            raise ConfigError(f"tokentrail: bad {where}: unknown key(s) {sorted(unknown)}; accepted: {', '.join(_CUSTOM_KEYS)}")
        if "input" not in entry and "output" not in entry:
            raise ConfigError(f"tokentrail: bad {where}: needs `input` and/or `output` (USD per million tokens)")
        rates: dict[str, float] = {}
        for key, price in entry.items():
            number = _number(price)
            if number is None:
                raise ConfigError(f"tokentrail: bad {where}: {key} = {price!r}; accepted: a number >= 0 (USD per million tokens)")
            rates[key] = number / 1_000_000
        rates.setdefault("input", 0.0)
        rates.setdefault("output", 0.0)
        out[model.strip().lower()] = Rates(model.strip(), "custom", "custom", **rates)
    return out


def parse_model_aliases(name: str, value: Any, source: str) -> dict[str, str]:
    """`{"my-prod-gpt": "gpt-4o"}`: names that are not models (deployments) -> the model to price."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in value.items()):
        raise ConfigError(
            f"tokentrail: bad value for `{name}` from {source}: {value!r}; accepted: a table of name -> model name"
        )
    return {k.strip().lower(): v.strip() for k, v in value.items()}


# Operations that generate output tokens: one of these without an output count was priced from half its tokens.
# (Embeddings, moderation, rerank have no output tokens to miss.)
_GENERATING = frozenset({"chat", "text_completion", "generate_content", "invoke_agent"})

# Providers that run models on your own hardware: $0 a token unless you set a price under `prices`.
LOCAL_PROVIDERS = frozenset({"ollama"})


def _split_prefix(provider: str, model: str) -> tuple[str, str]:
    """`openai/gpt-4o` -> (openai, gpt-4o) when the prefix is a provider; else unchanged."""
    prefix, sep, rest = model.partition("/")
    if sep and rest:
        known = normalize_provider(prefix)
        if known in GENAI_PROVIDERS or known == provider:
            return known, rest
    return provider, model


class PriceBook:
    """Custom prices, model aliases and the genai-prices database, behind one cache."""

    def __init__(self, custom: Mapping[str, Rates] | None = None, aliases: Mapping[str, str] | None = None) -> None:
        self.custom = dict(custom or {})
        self.aliases = dict(aliases or {})
        self._cache: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self.unpriced = 0

    def after_fork(self) -> None:
        """A fresh lock in a forked child: a thread of the parent may have held it at fork time."""
        self._lock = threading.Lock()

    # -- resolution (cached) ------------------------------------------------------------------

    def _entry(self, provider: str, model: str) -> Any:
        key = (provider, model)
        entry = self._cache.get(key, _MISSING)
        if entry is _MISSING:
            with self._lock:
                entry = self._cache.get(key, _MISSING)
                if entry is _MISSING:
                    try:
                        entry = self._resolve(provider, model)
                    except Exception as exc:  # noqa: BLE001 - a broken price database must not break recording
                        log.error_once("pricing.resolve", "tokentrail: could not look up a price", exc)
                        entry = None
                    self._cache[key] = entry
        return entry

    def _resolve(self, provider: str, model: str) -> Any:
        name = model.strip()
        for candidate in (f"{provider}/{name}".lower(), name.lower()):
            if candidate in self.aliases:
                name = self.aliases[candidate]
                break
        split_provider, split_name = _split_prefix(provider, name)
        for candidate in (f"{provider}/{name}".lower(), f"{split_provider}/{split_name}".lower(), split_name.lower()):
            if candidate in self.custom:
                return self.custom[candidate]
        if provider in LOCAL_PROVIDERS:
            return Rates(name, provider, "local", input=0.0, output=0.0)
        if (split_provider, split_name) != (provider, name):
            # A vendor prefix (`openai/gpt-oss-120b` on Groq): the provider serving it lists it under the full
            # name at its own price; only when it does not is the model priced as its maker's.
            served = self._genai(provider, name, infer=False)
            if served is not None:
                return served
        return self._genai(split_provider, split_name)

    @staticmethod
    def _genai(provider: str, model: str, infer: bool = True) -> _GenaiModel | Rates | None:
        from genai_prices import __version__
        from genai_prices.data_snapshot import get_snapshot

        snapshot = get_snapshot()
        tried: list[str | None] = []
        for ours in (provider, infer_provider(model)) if infer else (provider,):
            tried.extend(p for p in GENAI_PROVIDERS.get(ours, ()) if p not in tried)
        if provider == "unknown":
            tried.append(None)  # no provider given: match the model across the database
        for provider_id in tried:
            try:
                found_provider, info = snapshot.find_provider_model(model, None, provider_id, None)
            except LookupError:
                continue
            found = _GenaiModel(info, found_provider.id, __version__)
            return found if found.conditional else found.standard  # one price period: its rates, cached as they are
        return None

    def rates(self, provider: str, model: str | None, when: datetime | None = None) -> Rates | None:
        if not model:
            return None
        entry = self._entry(provider, model)
        if entry is None or isinstance(entry, Rates):
            return entry
        return entry.rates(when)

    # -- pricing ------------------------------------------------------------------------------

    def price(self, record: Any) -> None:
        """Fill `cost_usd`, `input_cost_usd`, `output_cost_usd` of an `LLMCall` (pipeline processor)."""
        if type(record) is not LLMCall or record.cost_usd is not None:
            return
        if record.input_tokens is None and record.output_tokens is None:
            if record.error_category is not None or self._free(record):
                record.cost_usd = record.input_cost_usd = record.output_cost_usd = 0.0
            return
        rates = None
        for model in (record.response_model, record.request_model):
            if model:
                # A fixed price resolved before (the usual case) is read straight from the cache.
                entry = self._cache.get((record.provider, model))
                rates = entry if type(entry) is Rates else self.rates(record.provider, model, record.started_at)
                if rates is not None:
                    break
        if rates is None:
            self.unpriced += 1
            model = record.response_model or record.request_model
            log.info_once(f"unpriced.{record.provider}.{model}", "tokentrail: no price known for %s %s; cost_usd is None (add it under `prices`)", record.provider, model)
            return
        result = rates.compute(
            record.input_tokens or 0,
            record.output_tokens or 0,
            record.cache_read_tokens or 0,
            record.cache_write_tokens or 0,
            record.reasoning_tokens or 0,
        )
        if result is None:
            log.warn_once("pricing.counts", "tokentrail: token counts contradict each other (cached or reasoning > total); cost_usd left None")
            self.unpriced += 1
            return
        record.input_cost_usd, record.output_cost_usd, record.cost_usd = result
        if record.input_tokens is None or (record.output_tokens is None and record.operation in _GENERATING):
            # Priced from half its tokens: say so on the record, never pass it off as complete.
            missing = "input_tokens" if record.input_tokens is None else "output_tokens"
            record.metadata = {**(record.metadata or {}), "cost_partial": f"{missing} unknown"}

    def _free(self, record: Any) -> bool:
        """A call to a local model costs nothing whatever its tokens (unless the model has a custom price)."""
        if record.provider not in LOCAL_PROVIDERS:
            return False
        rates = self.rates(record.provider, record.response_model or record.request_model or "?")
        return rates is not None and rates.source == "local"

    def cost(self, provider: Any, model: str, counts: tuple[Any, ...], when: datetime | None = None) -> Cost | None:
        """The `Cost` of (input, output, cache_read, cache_write, reasoning) tokens; `None` if unknown."""
        if any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in counts):
            log.warn_once("pricing.cost_args", "tokentrail: cost() needs non-negative whole token counts; got %r", counts)
            return None
        normalized = normalize_provider(provider, model)
        rates = self.rates(normalized, model, when)
        if rates is None:
            return None
        result = rates.compute(*counts)
        if result is None:
            return None
        return Cost(
            total_usd=result[2],
            input_usd=result[0],
            output_usd=result[1],
            model=rates.model,
            provider=normalized if rates.source == "custom" else rates.provider,
            source=rates.source,
        )


@functools.lru_cache(maxsize=None)
def default_book() -> PriceBook:
    """The book used before `init()`: the genai-prices database, no custom prices."""
    return PriceBook()


_active: PriceBook | None = None  # the active tracker's book (with its custom prices), set by `init()`


def prepare() -> None:
    """Import and load the price database now, on the calling thread (at `init()`).

    The worker would otherwise import it on its first record, while the
    application may be importing the same packages (httpx2, pydantic) on its own
    thread: two threads importing one package can hand one of them a partially
    initialised module. So no module is ever imported on the worker.
    """
    from genai_prices.data_snapshot import get_snapshot
    from genai_prices.types import ModelPrice, TieredPrices  # noqa: F401 - imported for the worker

    get_snapshot()


def after_fork_in_child() -> None:
    """Fresh locks in the default and the active book (called in a forked child)."""
    if default_book.cache_info().currsize:
        default_book().after_fork()
    if _active is not None:
        _active.after_fork()


def use_book(book: PriceBook | None) -> None:
    """Make `cost()` ask `book` (None: the default book again)."""
    global _active
    _active = book


def active_book() -> PriceBook:
    return _active if _active is not None else default_book()


def cost(
    provider: Any,
    model: str,
    *,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    reasoning_tokens: int = 0,
) -> Cost | None:
    """Price a call without recording it (custom prices of the active `init()` included); `None` if unknown."""
    counts = (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens)
    return active_book().cost(provider, model, counts)


_MISSING = object()
