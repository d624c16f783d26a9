// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {ChargeToken} from "./ChargeToken.sol";
import {StationRegistry} from "./StationRegistry.sol";

/// @title ChargingEscrow: locks each charging session's maximum price until it settles.
/// @notice Drivers keep a deposit here (or fund a session by EIP-2612 permit). A relayer opens a
/// session with the driver's EIP-712 `OpenSession` signature, so the driver needs no ether. The
/// station's CPO or an operator settles (at most the locked maximum: the CPO is paid, the rest
/// goes back to the driver) or cancels; after the expiry anyone may refund an unsettled session
/// to its driver. Balances held here (deposits, returns, CPO earnings) are withdrawn as tokens.
/// The contract has no owner and no admin function.
/// @dev Session ids are structured: `bytes32(driver << 96 | nonce)`, nonce in [1, 2^64). A
/// driver's nonces only grow (`lastNonce` shares the deposit's slot), so no id is ever usable
/// twice. A session is one storage word in the driver's ring of `RING_SIZE` slots, at
/// `nonce % RING_SIZE`; a closed session's slot is reused by a later one (a non-zero to non-zero
/// write instead of a fresh slot), and an open one can never be overwritten. An account's first
/// deposit fills its empty ring slots with a closed marker, so no session opened from a deposit
/// ever pays the zero-to-non-zero store.
contract ChargingEscrow {
    /// @notice One session open request, with the driver's signature in EIP-2098 form.
    struct OpenRequest {
        bytes32 sessionId;
        bytes32 stationId;
        uint96 maximum;
        uint40 expiry;
        bytes32 r;
        bytes32 vs;
    }

    struct SettleRequest {
        bytes32 sessionId;
        uint96 amount;
        bytes32 cdrHash;
    }

    struct Account {
        uint128 balance;
        uint64 lastNonce;
        bool ringAllocated; // set by the first deposit, which fills the ring with `_FREE_SLOT`
    }

    /// @dev `Closed` also covers ids that can no longer be opened (skipped or revoked nonces,
    /// or a closed session whose ring slot a later session reuses).
    enum SessionState {
        Unused,
        Open,
        Closed
    }

    uint256 public constant RING_SIZE = 8;
    bytes32 public constant OPEN_SESSION_TYPEHASH = keccak256(
        "OpenSession(bytes32 sessionId,bytes32 stationId,uint96 maximum,uint40 expiry,uint64 nonce)"
    );
    bytes32 private constant _DOMAIN_TYPEHASH = keccak256(
        "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    );
    string private constant _NAME = "ChargeNet Escrow";
    string private constant _VERSION = "1";
    uint256 private constant _HALF_ORDER =
        0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    // Session word: nonce (64) | maximum (96) | expiry (40) | station index (32) | state (8).
    uint256 private constant _MAXIMUM_SHIFT = 64;
    uint256 private constant _EXPIRY_SHIFT = 160;
    uint256 private constant _STATION_SHIFT = 200;
    uint256 private constant _STATE_SHIFT = 232;
    uint256 private constant _STATE_OPEN = 1;
    uint256 private constant _STATE_CLOSED = 2;
    // A closed session with nonce 0: no session id has nonce 0, so it never matches an id.
    uint256 private constant _FREE_SLOT = _STATE_CLOSED << _STATE_SHIFT;

    ChargeToken public immutable token;
    StationRegistry public immutable registry;
    bytes32 private immutable _cachedDomainSeparator;
    uint256 private immutable _cachedChainId;

    mapping(address => Account) private _accounts;
    mapping(address => uint256[RING_SIZE]) private _sessions;

    event Deposited(address indexed account, uint256 amount);
    event Withdrawn(address indexed account, address indexed to, uint256 amount);
    event NonceBumped(address indexed driver, uint64 lastNonce);
    event SessionOpened(
        bytes32 indexed sessionId,
        address indexed driver,
        bytes32 indexed stationId,
        uint32 stationIndex,
        uint96 maximum,
        uint40 expiry,
        bool viaPermit
    );
    event SessionSettled(
        bytes32 indexed sessionId,
        address indexed cpo,
        address indexed driver,
        uint32 stationIndex,
        uint96 amount,
        uint96 returned,
        bytes32 cdrHash
    );
    event SessionCancelled(
        bytes32 indexed sessionId, address indexed driver, address indexed by, uint96 amount
    );
    event SessionRefunded(bytes32 indexed sessionId, address indexed driver, uint96 amount);

    error ZeroAddress();
    error ZeroAmount();
    error EmptyBatch();
    error InvalidSessionId(bytes32 sessionId);
    error InvalidSignature(bytes32 sessionId);
    error ExpiryNotInFuture(bytes32 sessionId, uint40 expiry);
    error SessionIdUsed(bytes32 sessionId, uint64 lastNonce);
    error SessionSlotBusy(bytes32 sessionId);
    error InsufficientDeposit(address driver, uint256 balance, uint256 needed);
    error SessionNotOpen(bytes32 sessionId);
    error NotStationOperator(bytes32 sessionId, address caller);
    error AmountAboveMaximum(bytes32 sessionId, uint96 amount, uint96 maximum);
    error NotExpired(bytes32 sessionId, uint40 expiry);
    error NonceNotIncreasing(uint64 lastNonce, uint64 requested);
    error InvalidRecipient(address to);
    error MissingCdrHash(bytes32 sessionId);

    constructor(ChargeToken token_, StationRegistry registry_) {
        if (address(token_) == address(0) || address(registry_) == address(0)) revert ZeroAddress();
        token = token_;
        registry = registry_;
        _cachedChainId = block.chainid;
        _cachedDomainSeparator = _buildDomainSeparator();
    }

    // ---------------------------------------------------------------- deposits

    /// @notice Moves the caller's tokens into its escrow balance (no approval needed).
    function deposit(uint128 amount) external {
        if (amount == 0) revert ZeroAmount();
        _creditDeposit(msg.sender, amount);
        emit Deposited(msg.sender, amount);
        token.escrowPull(msg.sender, amount);
    }

    /// @notice Deposits for `driver` with its EIP-2612 permit (spender: this escrow, value:
    /// `amount`); anyone may relay it.
    function depositWithPermit(
        address driver,
        uint128 amount,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external {
        if (amount == 0) revert ZeroAmount();
        _creditDeposit(driver, amount);
        emit Deposited(driver, amount);
        _pullWithPermit(driver, amount, deadline, v, r, s);
    }

    /// @notice Pays `amount` of the caller's escrow balance out as tokens to `to`.
    function withdraw(address to, uint128 amount) external {
        if (to == address(0)) revert ZeroAddress();
        // Tokens sent to the escrow itself would belong to no balance, and nothing takes them out.
        if (to == address(this)) revert InvalidRecipient(to);
        if (amount == 0) revert ZeroAmount();
        Account storage account = _accounts[msg.sender];
        uint128 balance = account.balance;
        if (balance < amount) revert InsufficientDeposit(msg.sender, balance, amount);
        unchecked {
            account.balance = balance - amount;
        }
        emit Withdrawn(msg.sender, to, amount);
        token.transfer(to, amount);
    }

    /// @notice Voids every authorisation the caller signed with a nonce up to `lastNonce`.
    function bumpNonce(uint64 lastNonce) external {
        Account storage account = _accounts[msg.sender];
        uint64 current = account.lastNonce;
        if (lastNonce <= current) revert NonceNotIncreasing(current, lastNonce);
        account.lastNonce = lastNonce;
        emit NonceBumped(msg.sender, lastNonce);
    }

    // ---------------------------------------------------------------- open

    /// @notice Opens a session funded from the driver's escrow balance.
    function openFromDeposit(OpenRequest calldata request) external {
        (address driver, uint64 nonce) = _authorised(request);
        _lock(request, driver, nonce, registry.openRef(request.stationId), true);
    }

    /// @notice Opens a session funded by the driver's EIP-2612 permit for exactly the maximum
    /// (spender: this escrow). The driver needs neither ether nor a deposit.
    function openWithPermit(
        OpenRequest calldata request,
        uint256 permitDeadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external {
        (address driver, uint64 nonce) = _authorised(request);
        _lock(request, driver, nonce, registry.openRef(request.stationId), false);
        _pullWithPermit(driver, request.maximum, permitDeadline, v, r, s);
    }

    /// @notice Opens many deposit-funded sessions in one transaction; all or none.
    function openBatch(OpenRequest[] calldata requests) external {
        uint256 count = requests.length;
        if (count == 0) revert EmptyBatch();
        bytes32 lastStation;
        uint32 lastIndex;
        for (uint256 i; i < count; ++i) {
            OpenRequest calldata request = requests[i];
            (address driver, uint64 nonce) = _authorised(request);
            // Batches tend to come from one region: skip the registry call for a repeat station.
            if (request.stationId != lastStation || lastIndex == 0) {
                lastStation = request.stationId;
                lastIndex = registry.openRef(lastStation);
            }
            _lock(request, driver, nonce, lastIndex, true);
        }
    }

    // ---------------------------------------------------------------- close

    /// @notice Settles a session (station CPO or operator): pays `amount` to the CPO's escrow
    /// balance, returns the rest of the maximum to the driver's, records the CDR hash.
    function settle(bytes32 sessionId, uint96 amount, bytes32 cdrHash) external {
        if (cdrHash == bytes32(0)) revert MissingCdrHash(sessionId);
        (address driver, uint64 nonce) = _parse(sessionId);
        uint256[RING_SIZE] storage ring = _sessions[driver];
        uint256 slot = nonce % RING_SIZE;
        uint256 word = ring[slot];
        _requireOpen(word, nonce, sessionId);
        uint32 stationIndex = uint32(word >> _STATION_SHIFT);
        address cpo = registry.settlerOf(stationIndex, msg.sender);
        if (cpo == address(0)) revert NotStationOperator(sessionId, msg.sender);
        uint96 returned = _close(ring, slot, word, sessionId, amount);
        _credit(cpo, amount);
        _credit(driver, returned);
        emit SessionSettled(sessionId, cpo, driver, stationIndex, amount, returned, cdrHash);
    }

    /// @notice Settles many sessions in one transaction; all or none. Consecutive sessions of
    /// one CPO are credited with one storage write.
    function settleBatch(SettleRequest[] calldata requests) external {
        uint256 count = requests.length;
        if (count == 0) revert EmptyBatch();
        uint32 lastIndex;
        address cpo;
        uint256 owed;
        for (uint256 i; i < count; ++i) {
            SettleRequest calldata request = requests[i];
            bytes32 sessionId = request.sessionId;
            if (request.cdrHash == bytes32(0)) revert MissingCdrHash(sessionId);
            (address driver, uint64 nonce) = _parse(sessionId);
            uint256[RING_SIZE] storage ring = _sessions[driver];
            uint256 slot = nonce % RING_SIZE;
            uint256 word = ring[slot];
            _requireOpen(word, nonce, sessionId);
            uint32 stationIndex = uint32(word >> _STATION_SHIFT);
            if (stationIndex != lastIndex) {
                address next = registry.settlerOf(stationIndex, msg.sender);
                if (next == address(0)) revert NotStationOperator(sessionId, msg.sender);
                if (next != cpo) {
                    if (owed != 0) _credit(cpo, owed);
                    (cpo, owed) = (next, 0);
                }
                lastIndex = stationIndex;
            }
            uint96 amount = request.amount;
            uint96 returned = _close(ring, slot, word, sessionId, amount);
            // Cannot overflow: each amount is backed by tokens, whose supply fits in uint128.
            unchecked {
                owed += amount;
            }
            _credit(driver, returned);
            emit SessionSettled(
                sessionId, cpo, driver, stationIndex, amount, returned, request.cdrHash
            );
        }
        if (owed != 0) _credit(cpo, owed);
    }

    /// @notice Cancels an open session before settlement (station CPO or operator): the whole
    /// maximum goes back to the driver.
    function cancel(bytes32 sessionId) external {
        (address driver, uint64 nonce) = _parse(sessionId);
        uint256[RING_SIZE] storage ring = _sessions[driver];
        uint256 slot = nonce % RING_SIZE;
        uint256 word = ring[slot];
        _requireOpen(word, nonce, sessionId);
        uint32 stationIndex = uint32(word >> _STATION_SHIFT);
        if (registry.settlerOf(stationIndex, msg.sender) == address(0)) {
            revert NotStationOperator(sessionId, msg.sender);
        }
        uint96 maximum = _close(ring, slot, word, sessionId, 0);
        _credit(driver, maximum);
        emit SessionCancelled(sessionId, driver, msg.sender, maximum);
    }

    /// @notice Returns an unsettled session's whole maximum to its driver once the expiry has
    /// passed. Anyone may call it; the money only ever goes to the driver.
    function refund(bytes32 sessionId) external {
        (address driver, uint64 nonce) = _parse(sessionId);
        uint256[RING_SIZE] storage ring = _sessions[driver];
        uint256 slot = nonce % RING_SIZE;
        uint256 word = ring[slot];
        _requireOpen(word, nonce, sessionId);
        uint40 expiry = uint40(word >> _EXPIRY_SHIFT);
        if (block.timestamp < expiry) revert NotExpired(sessionId, expiry);
        uint96 maximum = _close(ring, slot, word, sessionId, 0);
        _credit(driver, maximum);
        emit SessionRefunded(sessionId, driver, maximum);
    }

    // ---------------------------------------------------------------- reads

    function depositOf(address account) external view returns (uint256) {
        return _accounts[account].balance;
    }

    function lastNonceOf(address driver) external view returns (uint64) {
        return _accounts[driver].lastNonce;
    }

    /// @notice The session id of `driver`'s session number `nonce`.
    function sessionIdFor(address driver, uint64 nonce) external pure returns (bytes32) {
        return bytes32((uint256(uint160(driver)) << 96) | nonce);
    }

    function sessionOf(bytes32 sessionId)
        external
        view
        returns (
            SessionState state,
            address driver,
            uint32 stationIndex,
            uint96 maximum,
            uint40 expiry
        )
    {
        uint64 nonce;
        (driver, nonce) = _parse(sessionId);
        uint256 word = _sessions[driver][nonce % RING_SIZE];
        if (uint64(word) != nonce) {
            state = nonce <= _accounts[driver].lastNonce ? SessionState.Closed : SessionState.Unused;
            return (state, driver, 0, 0, 0);
        }
        state = (word >> _STATE_SHIFT) & 0xff == _STATE_OPEN ? SessionState.Open : SessionState.Closed;
        stationIndex = uint32(word >> _STATION_SHIFT);
        maximum = uint96(word >> _MAXIMUM_SHIFT);
        expiry = uint40(word >> _EXPIRY_SHIFT);
    }

    function domainSeparator() external view returns (bytes32) {
        return _domainSeparator();
    }

    /// @notice EIP-5267: the EIP-712 domain wallets sign `OpenSession` under.
    function eip712Domain()
        external
        view
        returns (
            bytes1 fields,
            string memory name,
            string memory version,
            uint256 chainId,
            address verifyingContract,
            bytes32 salt,
            uint256[] memory extensions
        )
    {
        return (hex"0f", _NAME, _VERSION, block.chainid, address(this), bytes32(0), extensions);
    }

    // ---------------------------------------------------------------- internals

    function _parse(bytes32 sessionId) private pure returns (address driver, uint64 nonce) {
        uint256 raw = uint256(sessionId);
        driver = address(uint160(raw >> 96));
        uint256 low = raw & type(uint96).max;
        if (driver == address(0) || low == 0 || low > type(uint64).max) {
            revert InvalidSessionId(sessionId);
        }
        nonce = uint64(low);
    }

    /// @dev Recovers the `OpenSession` signer and requires it to be the driver the id names.
    function _authorised(OpenRequest calldata request)
        private
        view
        returns (address driver, uint64 nonce)
    {
        (driver, nonce) = _parse(request.sessionId);
        bytes32 structHash = keccak256(
            abi.encode(
                OPEN_SESSION_TYPEHASH,
                request.sessionId,
                request.stationId,
                request.maximum,
                request.expiry,
                nonce
            )
        );
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", _domainSeparator(), structHash));
        uint256 vs = uint256(request.vs);
        uint256 s = vs & ((1 << 255) - 1);
        if (s > _HALF_ORDER) revert InvalidSignature(request.sessionId);
        // ecrecover yields address(0) on failure, which never equals a parsed driver.
        if (ecrecover(digest, uint8((vs >> 255) + 27), request.r, bytes32(s)) != driver) {
            revert InvalidSignature(request.sessionId);
        }
    }

    function _lock(
        OpenRequest calldata request,
        address driver,
        uint64 nonce,
        uint32 stationIndex,
        bool fromDeposit
    ) private {
        uint96 maximum = request.maximum;
        uint40 expiry = request.expiry;
        if (maximum == 0) revert ZeroAmount();
        if (expiry <= block.timestamp) revert ExpiryNotInFuture(request.sessionId, expiry);
        Account storage account = _accounts[driver];
        uint64 lastNonce = account.lastNonce;
        if (nonce <= lastNonce) revert SessionIdUsed(request.sessionId, lastNonce);
        if (fromDeposit) {
            uint128 balance = account.balance;
            if (balance < maximum) revert InsufficientDeposit(driver, balance, maximum);
            unchecked {
                account.balance = balance - maximum;
            }
        }
        account.lastNonce = nonce;
        uint256[RING_SIZE] storage ring = _sessions[driver];
        uint256 slot = nonce % RING_SIZE;
        if ((ring[slot] >> _STATE_SHIFT) & 0xff == _STATE_OPEN) {
            revert SessionSlotBusy(request.sessionId);
        }
        ring[slot] = uint256(nonce) | (uint256(maximum) << _MAXIMUM_SHIFT)
            | (uint256(expiry) << _EXPIRY_SHIFT) | (uint256(stationIndex) << _STATION_SHIFT)
            | (_STATE_OPEN << _STATE_SHIFT);
        emit SessionOpened(
            request.sessionId, driver, request.stationId, stationIndex, maximum, expiry, !fromDeposit
        );
    }

    function _requireOpen(uint256 word, uint64 nonce, bytes32 sessionId) private pure {
        if (uint64(word) != nonce || (word >> _STATE_SHIFT) & 0xff != _STATE_OPEN) {
            revert SessionNotOpen(sessionId);
        }
    }

    /// @dev Marks the session closed (the slot stays non-zero, so it is cheap to reuse) and
    /// returns what goes back to the driver.
    function _close(
        uint256[RING_SIZE] storage ring,
        uint256 slot,
        uint256 word,
        bytes32 sessionId,
        uint96 amount
    ) private returns (uint96 returned) {
        uint96 maximum = uint96(word >> _MAXIMUM_SHIFT);
        if (amount > maximum) revert AmountAboveMaximum(sessionId, amount, maximum);
        ring[slot] = (word & ~(uint256(0xff) << _STATE_SHIFT)) | (_STATE_CLOSED << _STATE_SHIFT);
        unchecked {
            returned = maximum - amount;
        }
    }

    function _credit(address account, uint256 amount) private {
        // Cannot overflow: every escrow balance is backed by tokens, whose supply fits in uint128.
        unchecked {
            _accounts[account].balance += uint128(amount);
        }
    }

    /// @dev Credits a deposit. The account's first one also allocates its session ring: it writes
    /// `_FREE_SLOT` into every empty slot (one holding a permit-funded session stays as it is), so
    /// the zero-to-non-zero store (20,000) is paid once here rather than by each of the first
    /// `RING_SIZE` sessions, which then cost what every later one does.
    function _creditDeposit(address account, uint128 amount) private {
        Account storage credited = _accounts[account];
        // Cannot overflow: every escrow balance is backed by tokens, whose supply fits in uint128.
        unchecked {
            credited.balance += amount;
        }
        if (!credited.ringAllocated) {
            credited.ringAllocated = true;
            uint256[RING_SIZE] storage ring = _sessions[account];
            for (uint256 i; i < RING_SIZE; ++i) {
                if (ring[i] == 0) ring[i] = _FREE_SLOT;
            }
        }
    }

    /// @dev Pulls `amount` with the driver's permit. If someone front-ran the same signature
    /// through the token's plain `permit`, the allowance it left covers exactly this amount.
    function _pullWithPermit(
        address driver,
        uint256 amount,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) private {
        try token.permitToEscrow(driver, amount, deadline, v, r, s) {}
        catch (bytes memory reason) {
            if (token.allowance(driver, address(this)) < amount) {
                assembly ("memory-safe") {
                    revert(add(reason, 32), mload(reason))
                }
            }
            token.transferFrom(driver, address(this), amount);
        }
    }

    function _domainSeparator() private view returns (bytes32) {
        return block.chainid == _cachedChainId ? _cachedDomainSeparator : _buildDomainSeparator();
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(
            abi.encode(
                _DOMAIN_TYPEHASH,
                keccak256(bytes(_NAME)),
                keccak256(bytes(_VERSION)),
                block.chainid,
                address(this)
            )
        );
    }
}
