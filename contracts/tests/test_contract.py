"""CommunityLedger itself, on the in-process EVM and on anvil: who may write,
what a replay does, and that Python computes what the contract computes."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from contracts import chain as chainlib
from contracts import encoding
from contracts.services import chain_connected

from .anvil import STRANGER_KEY

pytestmark = pytest.mark.django_db
CONTRACTS = Path(__file__).resolve().parent.parent
DIGEST = b"\x11" * 32


def _stranger(connected) -> str:
    if connected.chain.backend == "embedded":
        connected.chain.fund(chainlib.address_of_key(STRANGER_KEY), 10**20)
    return STRANGER_KEY


def _operator_key(settings) -> str:
    return settings.CHAIN_OPERATOR_KEY or chainlib.EMBEDDED_OPERATOR_KEY


def _addresses(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [chainlib.checksum("0x" + rng.randbytes(20).hex()) for _ in range(n)]


def test_a_stranger_cannot_write(mirror, settings):
    connected = chain_connected()
    chain, address = connected.chain, connected.deployment.address
    stranger = _stranger(connected)
    accounts = _addresses(2, 1)
    for function, args in [
        ("applyBatch", (1, 0, accounts, [5, -5], DIGEST)),
        ("commitRoot", (1, b"\x22" * 32, DIGEST, 2)),
        ("transferOwnership", (chainlib.address_of_key(stranger),)),
    ]:
        with pytest.raises(chainlib.ChainReverted) as refused:
            chain.transact_as(stranger, address, function, *args)
        assert refused.value.name == "NotOwner"
    assert chain.balances_of(address, accounts) == [0, 0]
    assert tuple(chain.read(address, "settlementOf", 1)) == (bytes(32), 0)
    assert chain.read(address, "owner") == chain.operator


def test_a_replayed_batch_reverts_and_changes_nothing(mirror, settings):
    connected = chain_connected()
    chain, address = connected.chain, connected.deployment.address
    operator = _operator_key(settings)
    accounts = _addresses(3, 2)
    chain.transact_as(operator, address, "applyBatch", 7, 0, accounts, [10, -20, 10], DIGEST)
    for balances in ([10, -20, 10], [999, 999, -1998]):  # the same batch, or the same id with other content
        with pytest.raises(chainlib.ChainReverted) as refused:
            chain.transact_as(operator, address, "applyBatch", 7, 0, accounts, balances, DIGEST)
        assert refused.value.name == "BatchAlreadyApplied"
    with pytest.raises(chainlib.ChainReverted) as skipped:
        chain.transact_as(operator, address, "applyBatch", 7, 2, accounts, [1, 1, -2], DIGEST)
    assert skipped.value.name == "BatchOutOfOrder"
    with pytest.raises(chainlib.ChainReverted) as other_digest:
        chain.transact_as(operator, address, "applyBatch", 7, 1, accounts, [1, 1, -2], b"\x12" * 32)
    assert other_digest.value.name == "DigestMismatch"
    assert chain.balances_of(address, accounts) == [10, -20, 10]
    assert tuple(chain.read(address, "settlementOf", 7)) == (DIGEST, 1)
    assert chain.read(address, "isApplied", 7, 0) and not chain.read(address, "isApplied", 7, 1)


def test_ownership_moves_in_two_steps(mirror, settings):
    connected = chain_connected()
    chain, address = connected.chain, connected.deployment.address
    operator, successor = _operator_key(settings), _stranger(connected)
    successor_address = chainlib.address_of_key(successor)
    chain.transact_as(operator, address, "transferOwnership", successor_address)
    assert chain.read(address, "owner") == chain.operator  # not until accepted
    with pytest.raises(chainlib.ChainReverted) as wrong:
        chain.transact_as(operator, address, "acceptOwnership")
    assert wrong.value.name == "NotPendingOwner"
    chain.transact_as(successor, address, "acceptOwnership")
    assert chain.read(address, "owner") == successor_address
    accounts = _addresses(1, 3)
    with pytest.raises(chainlib.ChainReverted) as old:
        chain.transact_as(operator, address, "applyBatch", 1, 0, accounts, [1], DIGEST)
    assert old.value.name == "NotOwner"
    chain.transact_as(successor, address, "applyBatch", 1, 0, accounts, [1], DIGEST)
    assert chain.balances_of(address, accounts) == [1]


def test_python_digest_equals_the_contracts(mirror):
    connected = chain_connected()
    chain, address = connected.chain, connected.deployment.address
    lines = [
        encoding.ChainLine("M-0001", 3_000, 0, 3_000_000, 0),
        encoding.ChainLine("M-0002", 0, 2_500, 0, 2_268_182),
        encoding.ChainLine("street-light", 40, 0, 40_000, 0),
        encoding.ChainLine("M-0003", 0, 0, 0, 0),
    ]
    canonical = encoding.canonical_lines(lines)
    assert bytes(chain.read(address, "lineDigest", 42, canonical)) == encoding.line_digest(42, lines)
    assert bytes(chain.read(address, "lineDigest", 42, [])) == encoding.line_digest(42, [])
    assert encoding.line_digest(42, lines) == encoding.line_digest(42, list(reversed(lines)))
    assert encoding.line_digest(42, lines) != encoding.line_digest(43, lines)
    with pytest.raises(chainlib.ChainReverted) as unsorted:
        chain.read(address, "lineDigest", 42, list(reversed(canonical)))
    assert unsorted.value.name == "LinesNotSorted"


def test_account_addresses_are_derived_the_same_way(mirror):
    connected = chain_connected()
    for code in ["meter:M-0001", "wallet:alice", "pool:demo", "fee:demo", "meter:ünïcode"]:
        on_chain = connected.chain.read(connected.deployment.address, "accountAddress", code)
        assert on_chain.lower() == encoding.account_address(code)


def test_hand_encoded_calldata_is_what_web3_encodes(embedded):
    connected = chain_connected()
    contract = connected.chain.contract(connected.deployment.address)
    rng = random.Random(4)
    for count in (0, 1, 7, 300):
        accounts = _addresses(count, count)
        balances = [rng.randint(-(10**15), 10**15) for _ in range(count)]
        expected = contract.encode_abi("applyBatch", [2**40 + count, count, accounts, balances, DIGEST])
        selector = bytes.fromhex(expected[2:10])
        mine = encoding.apply_batch_calldata(
            selector, 2**40 + count, count, list(zip(accounts, balances, strict=True)), DIGEST
        )
        assert "0x" + mine.hex() == expected.lower()


def test_hand_encoded_lines_are_what_eth_abi_encodes():
    rng = random.Random(6)
    for count in (0, 1, 50):
        lines = [
            encoding.ChainLine(f"M-{i}", rng.randrange(2**40), rng.randrange(2**40), rng.randrange(2**63), 0)
            for i in range(count)
        ]
        rows = encoding.canonical_lines(lines)
        assert encoding.lines_encoded(9, rows) == encoding.lines_encoded_reference(9, rows)
    with pytest.raises(ValueError):
        encoding.line_digest(1, [encoding.ChainLine("M-1", -1, 0, 0, 0)])


def test_merkle_proofs_verify_on_chain(mirror, settings):
    connected = chain_connected()
    chain, address = connected.chain, connected.deployment.address
    accounts = [a.lower() for a in _addresses(11, 5)]
    balances = [(-1) ** i * (i + 1) * 1_000 for i in range(11)]
    leaves = [encoding.merkle_leaf(a, b) for a, b in zip(accounts, balances, strict=True)]
    layers = encoding.merkle_layers(leaves)
    root = encoding.merkle_root(leaves)
    chain.transact_as(_operator_key(settings), address, "commitRoot", 5, root, DIGEST, len(leaves))
    assert bytes(chain.read(address, "balancesRoot")) == root
    for account, balance in zip(accounts, balances, strict=True):
        proof = encoding.merkle_proof(layers, encoding.merkle_leaf(account, balance))
        assert encoding.merkle_verify(root, encoding.merkle_leaf(account, balance), proof)
        assert chain.read(address, "verifyBalance", chainlib.checksum(account), balance, proof)
        assert not chain.read(address, "verifyBalance", chainlib.checksum(account), balance + 1, proof)


@pytest.mark.django_db(False)
def test_the_committed_artifact_is_what_solc_compiles():
    """Recompiles CommunityLedger.sol with the pinned npm solc (``npm ci
    --prefix contracts``); fails if the committed artifact is stale."""
    solc = CONTRACTS / "node_modules" / "solc"
    assert solc.is_dir(), "the npm solc is missing: run `npm ci --prefix contracts`"
    done = subprocess.run(
        ["node", str(CONTRACTS / "compile.js"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert chainlib.artifact()["compiler"]["version"].startswith("0.8.37+")
    assert chainlib.artifact()["compiler"]["settings"]["evmVersion"] == "cancun"
