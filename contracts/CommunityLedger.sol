// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title CommunityLedger: a public mirror of Commonwatt's ledger balances.
/// @notice The utility's operator key (the owner) posts, after each settlement,
/// the balances that settlement changed, in batches identified by
/// (settlementId, batchNo), together with a digest over the settlement's
/// published lines. A batch applies once: replaying it reverts. Anyone can read
/// a balance, recompute a settlement's digest from its lines with `lineDigest`,
/// and, in Merkle mode, check a balance against the committed root with
/// `verifyBalance`. Balances are integer micro-coins (µk); energy is in Wh.
/// See docs/chain.md.
contract CommunityLedger {
    /// One line of a settlement: `meter` is keccak256 of the meter's public id.
    struct Line {
        bytes32 meter;
        uint64 importWh;
        uint64 exportWh;
        uint64 debitUk;
        uint64 creditUk;
    }

    struct Settlement {
        bytes32 digest;
        uint32 batches;
    }

    address public owner;
    address public pendingOwner;
    /// The last balance (µk) posted for each account.
    mapping(address account => int256 balanceUk) public balanceOf;
    mapping(uint256 settlementId => Settlement) private _settlements;
    /// Merkle mode: the root over every mirrored (account, balance) and the
    /// settlement that committed it.
    bytes32 public balancesRoot;
    uint256 public rootSettlementId;

    event BatchApplied(uint256 indexed settlementId, uint256 indexed batchNo, bytes32 digest, uint256 accounts);
    event RootCommitted(uint256 indexed settlementId, bytes32 root, bytes32 digest, uint256 accounts);
    event OwnershipTransferStarted(address indexed previousOwner, address indexed newOwner);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    error NotOwner(address caller);
    error NotPendingOwner(address caller);
    error ZeroAddress();
    error ZeroDigest();
    error LengthMismatch(uint256 accounts, uint256 balances);
    error BatchAlreadyApplied(uint256 settlementId, uint256 batchNo);
    error BatchOutOfOrder(uint256 settlementId, uint256 expected, uint256 got);
    error DigestMismatch(uint256 settlementId, bytes32 stored, bytes32 given);
    error LinesNotSorted(uint256 index);

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    constructor() {
        owner = msg.sender;
        emit OwnershipTransferred(address(0), msg.sender);
    }

    /// @notice Store the balances of one batch of a settlement.
    /// @dev Batches of a settlement apply in order 0, 1, 2...: a batch already
    /// applied reverts with BatchAlreadyApplied, so a retried or replayed
    /// transaction never applies twice. Every batch carries the settlement's
    /// digest; the first stores it and the others must match.
    function applyBatch(
        uint256 settlementId,
        uint256 batchNo,
        address[] calldata accounts,
        int256[] calldata balances,
        bytes32 digest
    ) external onlyOwner {
        if (accounts.length != balances.length) revert LengthMismatch(accounts.length, balances.length);
        _claimBatch(settlementId, batchNo, digest);
        for (uint256 i = 0; i < accounts.length; ++i) {
            balanceOf[accounts[i]] = balances[i];
        }
        emit BatchApplied(settlementId, batchNo, digest, accounts.length);
    }

    /// @notice Merkle mode: commit the root over every mirrored balance for a
    /// settlement in one small transaction (it counts as the settlement's batch 0).
    function commitRoot(uint256 settlementId, bytes32 root, bytes32 digest, uint256 accountCount) external onlyOwner {
        _claimBatch(settlementId, 0, digest);
        balancesRoot = root;
        rootSettlementId = settlementId;
        emit RootCommitted(settlementId, root, digest, accountCount);
    }

    function _claimBatch(uint256 settlementId, uint256 batchNo, bytes32 digest) private {
        if (digest == bytes32(0)) revert ZeroDigest();
        Settlement storage s = _settlements[settlementId];
        uint256 applied = s.batches;
        if (batchNo < applied) revert BatchAlreadyApplied(settlementId, batchNo);
        if (batchNo > applied) revert BatchOutOfOrder(settlementId, applied, batchNo);
        if (applied == 0) {
            s.digest = digest;
        } else if (s.digest != digest) {
            revert DigestMismatch(settlementId, s.digest, digest);
        }
        s.batches = uint32(applied + 1);
    }

    /// @notice The digest and number of applied batches of a settlement.
    function settlementOf(uint256 settlementId) external view returns (bytes32 digest, uint256 batches) {
        Settlement storage s = _settlements[settlementId];
        return (s.digest, s.batches);
    }

    /// @notice Whether batch `batchNo` of a settlement has been applied.
    function isApplied(uint256 settlementId, uint256 batchNo) external view returns (bool) {
        return batchNo < _settlements[settlementId].batches;
    }

    /// @notice Many balances in one call (µk), in the order asked.
    function balancesOf(address[] calldata accounts) external view returns (int256[] memory result) {
        result = new int256[](accounts.length);
        for (uint256 i = 0; i < accounts.length; ++i) {
            result[i] = balanceOf[accounts[i]];
        }
    }

    /// @notice The canonical digest of a settlement's lines:
    /// keccak256(abi.encode(settlementId, lines)) with lines strictly ascending
    /// by `meter` (so one set of lines has exactly one digest).
    function lineDigest(uint256 settlementId, Line[] calldata lines) external pure returns (bytes32) {
        for (uint256 i = 1; i < lines.length; ++i) {
            if (lines[i].meter <= lines[i - 1].meter) revert LinesNotSorted(i);
        }
        return keccak256(abi.encode(settlementId, lines));
    }

    /// @notice The account a ledger account code maps to when its owner has not
    /// registered an address of their own: the low 20 bytes of
    /// keccak256("commonwatt:" ++ code).
    function accountAddress(string calldata code) external pure returns (address) {
        return address(uint160(uint256(keccak256(bytes.concat("commonwatt:", bytes(code))))));
    }

    /// @notice Merkle mode: whether `balanceUk` is `account`'s balance under the
    /// committed root. Leaves are keccak256(keccak256(abi.encode(account,
    /// balanceUk))); pairs hash in sorted order, so a proof is just the siblings.
    function verifyBalance(address account, int256 balanceUk, bytes32[] calldata proof) external view returns (bool) {
        bytes32 node = keccak256(bytes.concat(keccak256(abi.encode(account, balanceUk))));
        for (uint256 i = 0; i < proof.length; ++i) {
            bytes32 sibling = proof[i];
            node = node < sibling
                ? keccak256(abi.encodePacked(node, sibling))
                : keccak256(abi.encodePacked(sibling, node));
        }
        return balancesRoot != bytes32(0) && node == balancesRoot;
    }

    /// @notice Start handing the contract to `newOwner`, who must accept.
    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        pendingOwner = newOwner;
        emit OwnershipTransferStarted(owner, newOwner);
    }

    /// @notice The pending owner takes over (two steps: a mistyped address
    /// cannot lock the operator out).
    function acceptOwnership() external {
        if (msg.sender != pendingOwner) revert NotPendingOwner(msg.sender);
        emit OwnershipTransferred(owner, msg.sender);
        owner = msg.sender;
        pendingOwner = address(0);
    }
}
