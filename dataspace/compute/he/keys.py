"""Fresh CKKS keys per dataset and level, and the only two ways to load them.

A level's keys are of one parameter set (``params``): the N = 8192 set of the level, or, for a
small store, its N = 4096 set (``params.for_store``). The pair records which (``KeyPair.params``)
so the store builder writes it into the layout; a context's ring is also in the context itself,
and SEAL refuses a ciphertext of another parameter set.

The secret context uses symmetric encryption: the store builder, the one party that encrypts,
already holds the secret key, and symmetric CKKS encrypts ~2-3x faster than public-key
encryption, and its ciphertexts can be saved seeded (``seeded``: half the bytes). The public
context therefore holds no public (encryption) key at all: an HE worker can evaluate but neither
decrypt nor forge inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import tenseal as ts

from dataspace.compute.he.params import LEVELS, PARAM_SETS, SMALL_MAX_ROWS, Level, ParamSet, for_store


@dataclass(frozen=True)
class KeyPair:
    level: Level
    secret_context: bytes  # serialized context WITH the secret key (symmetric encryption)
    public_context: bytes  # serialized WITHOUT the secret key: Galois keys (+ relin keys for products)
    params: str = field(default="")  # the parameter set's name; "" for the level's N = 8192 set

    @property
    def param_set(self) -> ParamSet:
        return PARAM_SETS[self.params] if self.params else LEVELS[Level(self.level)]


def param_set(level: str) -> ParamSet:
    try:
        return LEVELS[Level(level)]
    except ValueError:
        raise ValueError(f"unknown level {level!r}; known: {', '.join(sorted(LEVELS))}") from None


def generate_keys(level: str, params: ParamSet | None = None) -> KeyPair:
    """Fresh keys of ``level``, of parameter set ``params`` (default: the level's N = 8192 set)."""
    if params is None:
        params = param_set(level)
    elif params.level != Level(level):
        raise ValueError(f"parameter set {params.name!r} is not of the {level!r} level")
    context = ts.context(
        ts.SCHEME_TYPE.CKKS,
        params.poly_modulus_degree,
        coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
        encryption_type=ts.ENCRYPTION_TYPE.SYMMETRIC,
        n_threads=1,
    )
    context.global_scale = params.scale
    # The flags travel with the serialized context, and TenSEAL 0.3.18 cannot turn auto_relin off
    # again on a context loaded with it on (measured): they must be off before serializing.
    _configure(context)
    # The secret context only encrypts (store builder) and decrypts (custodian): no evaluation
    # keys, which keeps the sealed blob small.
    secret = context.serialize(
        save_public_key=False, save_secret_key=True, save_galois_keys=False, save_relin_keys=False
    )
    context.generate_galois_keys()  # rotate-and-sum of depth-0 aggregates
    if params.depth > 0:
        # Our products stay unrelinearised, but the keys cost little next to the Galois keys and
        # keep relinearisation open to a later operation without rebuilding stores.
        context.generate_relin_keys()
    public = context.serialize(
        save_public_key=False, save_secret_key=False, save_galois_keys=True, save_relin_keys=params.depth > 0
    )
    return KeyPair(level=params.level, secret_context=secret, public_context=public, params=params.name)


def store_keys(*, rows: int, levels: set[Level] | None = None) -> dict[Level, KeyPair]:
    """Fresh keys for a new store of ``rows`` rows whose columns use ``levels`` besides products
    (the default level): of the small ring's sets up to ``SMALL_MAX_ROWS`` rows, with sums-level
    keys whatever the columns (a small store's totals sit in its sums-level packs), N = 8192 above."""
    wanted = {Level.PRODUCTS, *(levels or set())}
    if rows <= SMALL_MAX_ROWS:
        wanted.add(Level.SUMS)
    return {level: generate_keys(level, for_store(level, rows)) for level in sorted(wanted)}


def _configure(context: Any) -> Any:
    # Products are accumulated unrelinearised and unrescaled (see params); threads would only
    # contend for the GIL, parallelism is by process.
    context.auto_relin = False
    context.auto_rescale = False
    context.auto_mod_switch = True
    if context.auto_relin or context.auto_rescale:
        raise ValueError("this context would relinearise or rescale products; regenerate its keys")
    return context


def context_param_set(context: ts.Context, level: Level | str) -> ParamSet:
    """The parameter set of ``level`` a loaded context is of (told apart by its ring: each level
    has one set per ring)."""
    degree = context.seal_context().data.key_context_data().parms().poly_modulus_degree()
    for params in PARAM_SETS.values():
        if params.level == Level(level) and params.poly_modulus_degree == degree:
            return params
    raise ValueError(f"no {Level(level).value!r} parameter set has N = {degree}")


def load_public_context(data: bytes) -> ts.Context:
    context = ts.context_from(data, n_threads=1)
    if context.is_private():
        raise ValueError("refusing a context that holds a secret key where a public one is required")
    return _configure(context)


def load_secret_context(data: bytes) -> ts.Context:
    context = ts.context_from(data, n_threads=1)
    if not context.is_private():
        raise ValueError("the context holds no secret key")
    return _configure(context)
