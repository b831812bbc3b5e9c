"""What goes on chain, byte for byte: account addresses, the settlement digest,
the ``applyBatch`` calldata and the Merkle tree of balances.

Pure functions over plain data (no Django, no web3 provider): anyone holding a
settlement's published lines can recompute its digest with this module or with
the contract's ``lineDigest``; the two are tested to agree. Money in integer µk,
energy in integer Wh.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from eth_abi import encode as abi_encode

try:  # pysha3's C keccak is ~10x eth-hash's default: 20,000 hashes per 10,000-account settlement
    from sha3 import keccak_256 as _keccak256

    def keccak(data: bytes) -> bytes:
        return _keccak256(data).digest()

except ImportError:  # pragma: no cover - safe-pysha3 is pinned in requirements
    from eth_hash.auto import keccak

ADDRESS_PREFIX = b"commonwatt:"
LINE_TYPE = "(bytes32,uint64,uint64,uint64,uint64)[]"
INT256_MIN = -(2**255)
INT256_MAX = 2**255 - 1


@dataclass(frozen=True, slots=True)
class ChainLine:
    """One meter's line of a settlement, as published."""

    meter_id: str
    import_wh: int
    export_wh: int
    debit_uk: int
    credit_uk: int


def account_address(code: str) -> str:
    """The on-chain address of a ledger account code, unless its owner
    registered one: the low 20 bytes of keccak256("commonwatt:" + code).
    Nobody holds a key for it; it is a deterministic, public name."""
    return "0x" + keccak(ADDRESS_PREFIX + code.encode()).hex()[-40:]


def meter_key(meter_id: str) -> bytes:
    """keccak256 of the meter's public id: the line's sort key on chain."""
    return keccak(meter_id.encode())


def canonical_lines(lines: Sequence[ChainLine]) -> list[tuple[bytes, int, int, int, int]]:
    """The lines as the contract's ``Line[]``, strictly ascending by meter key."""
    rows = sorted((meter_key(ln.meter_id), ln.import_wh, ln.export_wh, ln.debit_uk, ln.credit_uk) for ln in lines)
    for before, after in itertools.pairwise(rows):
        if before[0] == after[0]:
            raise ValueError("two lines for the same meter")
    return rows


def line_digest(settlement_id: int, lines: Sequence[ChainLine]) -> bytes:
    """keccak256(abi.encode(settlementId, Line[] sorted by meter key)): the
    same bytes the contract's ``lineDigest`` hashes. A settlement without lines
    still gets a non-zero digest (the contract refuses a zero one)."""
    return keccak(lines_encoded(settlement_id, canonical_lines(lines)))


def lines_encoded(settlement_id: int, rows: Sequence[tuple[bytes, int, int, int, int]]) -> bytes:
    """abi.encode(uint256, (bytes32,uint64,uint64,uint64,uint64)[]) by hand
    (eth-abi's generic encoder needs ~1 ms a line); every field is one word.
    A test checks it byte for byte against eth-abi."""
    parts = [_uint(settlement_id), _uint(64), _uint(len(rows))]
    for key, *amounts in rows:
        parts.append(key)
        for amount in amounts:
            if not 0 <= amount < 2**64:
                raise ValueError(f"{amount} does not fit uint64 (a line's Wh and µk are non-negative)")
            parts.append(_uint(amount))
    return b"".join(parts)


def lines_encoded_reference(settlement_id: int, rows: Sequence[tuple[bytes, int, int, int, int]]) -> bytes:
    """The same with eth-abi (slow; for tests)."""
    return abi_encode(["uint256", LINE_TYPE], [settlement_id, list(rows)])


def _uint(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big", signed=True)


def balances_of_calldata(selector: bytes, addresses: Sequence[str]) -> bytes:
    """``balancesOf(address[])`` calldata, by hand like ``apply_batch_calldata``."""
    return b"".join(
        [selector, _uint(32), _uint(len(addresses))] + [bytes(12) + bytes.fromhex(a[2:]) for a in addresses]
    )


def int256_array_decoded(output: bytes) -> list[int]:
    """The ``int256[]`` a view function returned."""
    count = int.from_bytes(output[32:64], "big")
    return [int.from_bytes(output[64 + 32 * i : 96 + 32 * i], "big", signed=True) for i in range(count)]


def apply_batch_calldata(
    selector: bytes, settlement_id: int, batch_no: int, items: Sequence[tuple[str, int]], digest: bytes
) -> bytes:
    """``applyBatch(uint256,uint256,address[],int256[],bytes32)`` calldata for
    ``items`` of (address hex, balance µk), encoded by hand: eth-abi's generic
    encoder takes ~0.5 ms per account, which alone would cap the mirror near
    2,000 accounts/s. A test checks it byte for byte against web3's encoder."""
    count = len(items)
    head = 5 * 32
    accounts_at = head
    balances_at = head + 32 + 32 * count
    parts = [selector, _word(settlement_id), _word(batch_no), _word(accounts_at), _word(balances_at), digest]
    parts.append(_word(count))
    parts.extend(bytes(12) + bytes.fromhex(address[2:]) for address, _ in items)
    parts.append(_word(count))
    for _, balance_uk in items:
        if not INT256_MIN <= balance_uk <= INT256_MAX:
            raise ValueError(f"balance {balance_uk} µk does not fit int256")
        parts.append(_word(balance_uk))
    return b"".join(parts)


# --- Merkle mode -------------------------------------------------------------


def merkle_leaf(address: str, balance_uk: int) -> bytes:
    """keccak256(keccak256(abi.encode(account, balance))): hashing twice keeps a
    leaf from ever equalling an inner node (the second-preimage trick)."""
    return keccak(keccak(bytes(12) + bytes.fromhex(address[2:]) + _word(balance_uk)))


def _pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a < b else keccak(b + a)


def merkle_layers(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """All layers from the sorted leaves up to the root; an odd last node moves
    up unchanged (so its proof simply has one sibling fewer)."""
    layer = sorted(leaves)
    layers = [layer]
    while len(layer) > 1:
        layer = [_pair(layer[i], layer[i + 1]) if i + 1 < len(layer) else layer[i] for i in range(0, len(layer), 2)]
        layers.append(layer)
    return layers


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The root over ``leaves`` (32 zero bytes for none)."""
    return merkle_layers(leaves)[-1][0] if leaves else bytes(32)


def merkle_proof(layers: list[list[bytes]], leaf: bytes) -> list[bytes]:
    """The siblings from ``leaf`` to the root, for ``verifyBalance``."""
    index = layers[0].index(leaf)
    proof = []
    for layer in layers[:-1]:
        sibling = index ^ 1
        if sibling < len(layer):
            proof.append(layer[sibling])
        index //= 2
    return proof


def merkle_verify(root: bytes, leaf: bytes, proof: Sequence[bytes]) -> bool:
    """What the contract's ``verifyBalance`` computes, in Python."""
    node = leaf
    for sibling in proof:
        node = _pair(node, sibling)
    return node == root
