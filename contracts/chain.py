"""The only module that speaks web3: the CommunityLedger contract on an
in-process EVM (``embedded``) or on a JSON-RPC node (``rpc``).

Everything here translates: plain Python values in, plain values out, and the
two ways a node says no (eth-tester's ``TransactionFailed`` in-process, web3's
``ContractLogicError``/``ContractCustomError`` on a node) become one
``ChainReverted`` in ``_translated``; a node that cannot be reached becomes
``ChainUnavailable``. The app reads only the compiled artifact
(``artifacts/CommunityLedger.json``), never the Solidity source.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import json
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from eth_abi import decode as abi_decode
from eth_account import Account as EthAccount
from eth_utils.exceptions import ValidationError as EthValidationError
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError, TimeExhausted, TransactionNotFound, Web3Exception

from . import encoding

ARTIFACT = Path(__file__).resolve().parent / "artifacts" / "CommunityLedger.json"
# A development key for the embedded chain only (its chain lives in memory).
EMBEDDED_OPERATOR_KEY = "0x" + "c0" * 31 + "01"
DEPLOY_GAS = 2_000_000
# Gas of applyBatch, measured (bench/RESULTS-chain.md): 21,000 per transaction,
# up to ~46,000 for a settlement's first batch (its record), then per account
# ~23,200 for a new non-zero slot (worst case: a negative balance, 32 non-zero
# calldata bytes) and ~6,300 to overwrite one. The limit assumes every account
# is new, with a margin: the limit is not charged, running out of gas would be.
BATCH_BASE_GAS = 100_000
GAS_PER_NEW_ACCOUNT = 25_000
ROOT_GAS = 200_000
PRIORITY_FEE_WEI = 1_000_000_000


class ChainError(Exception):
    """Something went wrong talking to the chain."""


class ChainUnavailable(ChainError):
    """The node cannot be reached or did not answer in time: try later."""


class ChainReverted(ChainError):
    """The contract refused: ``name`` is its custom error (or the reason)."""

    def __init__(self, name: str, args: tuple[Any, ...] = ()) -> None:
        super().__init__(f"{name}{args if args else ''}")
        self.name = name
        self.error_args = args


@dataclass(frozen=True, slots=True)
class Signed:
    tx_hash: str
    raw: bytes
    nonce: int
    gas_limit: int


@dataclass(frozen=True, slots=True)
class Receipt:
    ok: bool
    gas_used: int
    block_number: int


@functools.cache
def artifact() -> dict[str, Any]:
    """The compiled contract (ABI, bytecode, compiler version and settings)."""
    return json.loads(ARTIFACT.read_text())


@functools.cache
def _errors_by_selector() -> dict[bytes, tuple[str, list[str]]]:
    errors = {}
    for item in artifact()["abi"]:
        if item["type"] == "error":
            types = [arg["type"] for arg in item["inputs"]]
            signature = f"{item['name']}({','.join(types)})"
            errors[Web3.keccak(text=signature)[:4]] = (item["name"], types)
    return errors


def decode_revert(data: bytes) -> ChainReverted:
    """A custom error (or ``Error(string)``) from raw revert data."""
    known = _errors_by_selector().get(data[:4])
    if known is not None:
        name, types = known
        return ChainReverted(name, tuple(abi_decode(types, data[4:])))
    if data[:4] == bytes.fromhex("08c379a0"):
        return ChainReverted(abi_decode(["string"], data[4:])[0])
    return ChainReverted("revert", (data.hex(),))


def _revert_data(exc: Exception) -> bytes | None:
    data = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    message = str(exc.args[0]) if exc.args else ""
    _, _, rest = message.partition("execution reverted: ")
    if rest.startswith(("b'", 'b"')):
        with contextlib.suppress(ValueError, SyntaxError):
            return ast.literal_eval(rest)
    return None


def _nonce_already_used(message: str) -> bool:
    """Whether a refused send means the nonce was used already (a node says
    "already known"/"nonce too low"; py-evm "Expected 3, but got 2")."""
    text = message.lower()
    if "already known" in text or "already imported" in text or "nonce too low" in text:
        return True
    found = re.search(r"invalid transaction nonce: expected (\d+), but got (\d+)", text)
    return bool(found) and int(found.group(1)) > int(found.group(2))


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """The one place where reverts and outages become ChainReverted/ChainUnavailable."""
    try:
        from eth_tester.exceptions import TransactionFailed
    except ImportError:  # pragma: no cover - eth-tester is pinned in requirements
        TransactionFailed = ContractLogicError
    try:
        yield
    except (ContractCustomError, ContractLogicError, TransactionFailed) as exc:
        data = _revert_data(exc)
        if data:
            raise decode_revert(data) from exc
        raise ChainReverted(str(exc)) from exc
    except (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError, TimeExhausted) as exc:
        raise ChainUnavailable(f"{type(exc).__name__}: {exc}") from exc
    except (Web3Exception, EthValidationError) as exc:  # py-evm refuses e.g. a used nonce with the latter
        raise ChainError(f"{type(exc).__name__}: {exc}") from exc


class Chain:
    """The contract on one chain, operated with one key."""

    def __init__(self, w3: Web3, backend: str, operator_key: str, poll_s: float) -> None:
        self.w3 = w3
        self.backend = backend
        self._operator = EthAccount.from_key(operator_key)
        self.operator = self._operator.address
        self._poll_s = poll_s
        self._abi = artifact()["abi"]
        self._selector = {
            name: bytes.fromhex(Web3.keccak(text=signature).hex()[:8])
            for name, signature in [
                ("applyBatch", "applyBatch(uint256,uint256,address[],int256[],bytes32)"),
                ("commitRoot", "commitRoot(uint256,bytes32,bytes32,uint256)"),
                ("balancesOf", "balancesOf(address[])"),
            ]
        }
        # py-evm is not thread-safe; a node serializes on its own (and the
        # mirror sends on one thread while it reads receipts on another).
        self.lock: Any = threading.RLock() if backend == "embedded" else contextlib.nullcontext()
        with _translated():
            self.chain_id = w3.eth.chain_id

    def contract(self, address: str) -> Any:
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=self._abi)

    # --- sending ---------------------------------------------------------------

    def nonce(self, pending: bool = True) -> int:
        """The operator's next nonce (``pending``: counting the node's mempool)."""
        with self.lock, _translated():
            return self.w3.eth.get_transaction_count(self.operator, "pending" if pending else "latest")

    def base_fee(self) -> int:
        """The latest block's base fee (wei per gas)."""
        with self.lock, _translated():
            return self.w3.eth.get_block("latest").get("baseFeePerGas", 0)

    def _sign(
        self, to: str | None, data: bytes, nonce: int, gas_limit: int, key: Any = None, base_fee: int | None = None
    ) -> Signed:
        base_fee = self.base_fee() if base_fee is None else base_fee
        tx = {
            "chainId": self.chain_id,
            "nonce": nonce,
            "gas": gas_limit,
            # Twice the current base fee: a signed batch stays valid through
            # a few full blocks, so a re-send after an outage still lands.
            "maxFeePerGas": 2 * base_fee + PRIORITY_FEE_WEI,
            "maxPriorityFeePerGas": PRIORITY_FEE_WEI,
            "value": 0,
            "data": data,
        }
        if to is not None:
            tx["to"] = Web3.to_checksum_address(to)
        signed = (key or self._operator).sign_transaction(tx)
        return Signed("0x" + bytes(signed.hash).hex(), bytes(signed.raw_transaction), nonce, gas_limit)

    def sign_apply_batch(
        self,
        address: str,
        settlement_id: int,
        batch_no: int,
        items: Sequence[tuple[str, int]],
        digest: bytes,
        nonce: int,
        base_fee: int | None = None,
    ) -> Signed:
        """``applyBatch`` for ``items`` of (address, balance µk), signed, not sent."""
        data = encoding.apply_batch_calldata(self._selector["applyBatch"], settlement_id, batch_no, items, digest)
        return self._sign(address, data, nonce, BATCH_BASE_GAS + GAS_PER_NEW_ACCOUNT * len(items), base_fee=base_fee)

    def sign_commit_root(
        self,
        address: str,
        settlement_id: int,
        root: bytes,
        digest: bytes,
        account_count: int,
        nonce: int,
        base_fee: int | None = None,
    ) -> Signed:
        """``commitRoot`` (Merkle mode), signed, not sent."""
        data = self._selector["commitRoot"] + b"".join(
            [settlement_id.to_bytes(32, "big"), root, digest, account_count.to_bytes(32, "big")]
        )
        return self._sign(address, data, nonce, ROOT_GAS, base_fee=base_fee)

    def send_raw(self, raw: bytes) -> None:
        """Broadcast a signed transaction; sending one the node already has is fine."""
        try:
            with self.lock, _translated():
                self.w3.eth.send_raw_transaction(raw)
        except (ChainError, ValueError) as exc:
            if _nonce_already_used(str(exc)):
                return  # these bytes (or this nonce) went out before; the receipt tells the rest
            raise

    def receipt(self, tx_hash: str) -> Receipt | None:
        """The mined receipt, or None while the node does not know it."""
        try:
            with self.lock, _translated():
                found = self.w3.eth.get_transaction_receipt(tx_hash)
        except (TransactionNotFound, ChainError) as exc:
            if isinstance(exc, ChainUnavailable):
                raise
            return None
        if found is None:
            return None
        return Receipt(found["status"] == 1, found["gasUsed"], found["blockNumber"])

    def wait_receipt(self, tx_hash: str, timeout_s: float) -> Receipt | None:
        """Poll for the receipt every ``poll_s`` (web3's 0.1 s default would cap
        a node at ~10 batches a second); None after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.receipt(tx_hash)
            if found is not None or time.monotonic() >= deadline:
                return found
            time.sleep(self._poll_s)

    def deploy(self, timeout_s: float = 60) -> tuple[str, str]:
        """Deploy CommunityLedger owned by the operator: (address, tx hash)."""
        signed = self._sign(None, bytes.fromhex(artifact()["bytecode"][2:]), self.nonce(), DEPLOY_GAS)
        self.send_raw(signed.raw)
        found = self.wait_receipt(signed.tx_hash, timeout_s)
        if found is None or not found.ok:
            raise ChainError(f"deploying CommunityLedger failed ({signed.tx_hash})")
        with self.lock, _translated():
            address = self.w3.eth.get_transaction_receipt(signed.tx_hash)["contractAddress"]
        return address, signed.tx_hash

    def transact_as(self, key: str, address: str, function: str, *args: Any, timeout_s: float = 60) -> Receipt:
        """Call a contract function from any key (ownership moves, tests of who
        may write). A revert raises ChainReverted, in-process or on a node."""
        account = EthAccount.from_key(key)
        with self.lock, _translated():
            contract = self.contract(address)
            getattr(contract.functions, function)(*args).call({"from": account.address})  # the revert reason first
            data = bytes.fromhex(contract.encode_abi(function, list(args))[2:])
            nonce = self.w3.eth.get_transaction_count(account.address, "pending")
        signed = self._sign(address, data, nonce, DEPLOY_GAS, key=account)
        self.send_raw(signed.raw)
        found = self.wait_receipt(signed.tx_hash, timeout_s)
        if found is None:
            raise ChainUnavailable(f"no receipt for {signed.tx_hash}")
        if not found.ok:
            raise ChainReverted("reverted", (signed.tx_hash,))
        return found

    # --- reading ---------------------------------------------------------------

    def block_number(self) -> int:
        """The latest block: a cheap way to ask whether the node answers."""
        with self.lock, _translated():
            return self.w3.eth.block_number

    def has_code(self, address: str) -> bool:
        with self.lock, _translated():
            return len(self.w3.eth.get_code(Web3.to_checksum_address(address))) > 0

    def read(self, address: str, function: str, *args: Any) -> Any:
        """A view function's result (eth_call)."""
        with self.lock, _translated():
            return getattr(self.contract(address).functions, function)(*args).call()

    def balances_of(self, address: str, accounts: Sequence[str], chunk: int = 1000) -> list[int]:
        """On-chain balances (µk) of ``accounts``, ``chunk`` per eth_call."""
        result: list[int] = []
        to = Web3.to_checksum_address(address)
        for start in range(0, len(accounts), chunk):
            data = encoding.balances_of_calldata(self._selector["balancesOf"], accounts[start : start + chunk])
            with self.lock, _translated():
                output = self.w3.eth.call({"to": to, "data": "0x" + data.hex()})
            result.extend(encoding.int256_array_decoded(bytes(output)))
        return result

    def fund(self, recipient: str, wei: int) -> None:
        """Embedded only: give ``recipient`` ether from eth-tester's rich account."""
        with self.lock, _translated():
            self.w3.eth.send_transaction({"from": self.w3.eth.accounts[0], "to": recipient, "value": wei})


def connect_embedded(operator_key: str = EMBEDDED_OPERATOR_KEY) -> Chain:
    """A fresh in-process EVM (eth-tester on py-evm) with a funded operator."""
    from eth_tester import EthereumTester, PyEVMBackend
    from web3 import EthereumTesterProvider

    w3 = Web3(EthereumTesterProvider(EthereumTester(PyEVMBackend())))
    chain = Chain(w3, "embedded", operator_key, poll_s=0)
    chain.fund(chain.operator, 10**23)
    return chain


def connect_rpc(url: str, operator_key: str, timeout_s: float = 10, poll_s: float = 0.002) -> Chain:
    """A JSON-RPC node at ``url``; raises ChainUnavailable when it does not answer."""
    from web3 import HTTPProvider

    if not operator_key:
        raise ChainError("CHAIN_OPERATOR_KEY is required for the rpc backend")
    w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": timeout_s}))
    return Chain(w3, "rpc", operator_key, poll_s=poll_s)


def checksum(address: str) -> str:
    """The EIP-55 form web3 wants for address arguments."""
    return Web3.to_checksum_address(address)


def address_of_key(key: str) -> str:
    """The address that a private key signs as."""
    return EthAccount.from_key(key).address
