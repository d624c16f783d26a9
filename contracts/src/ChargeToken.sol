// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title ChargeToken: chargenet's prepaid charging credit (ERC-20 + EIP-2612 permit).
/// @notice One token is one unit of a fiat currency (e.g. EUR, 6 decimals). An MSP minter mints on
/// top-up and burns (with the holder's allowance) on payout. The admin only manages minters, links
/// the escrow once and hands the admin role on; it cannot move or burn anybody's tokens.
/// @dev Balance and permit nonce share one slot per holder, so a permit that also moves the
/// holder's tokens (see `permitToEscrow`) writes that slot once. Balances are uint128: `mint`
/// caps the total supply at 2^128 - 1, so no single balance can overflow.
contract ChargeToken {
    struct Holder {
        uint128 balance;
        uint64 nonce;
    }

    bytes32 public constant PERMIT_TYPEHASH = keccak256(
        "Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
    );
    bytes32 private constant _DOMAIN_TYPEHASH = keccak256(
        "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    );
    bytes32 private constant _VERSION_HASH = keccak256("1");
    /// @dev secp256k1n / 2: signatures with a larger s are the malleable twin of a valid one.
    uint256 private constant _HALF_ORDER =
        0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    string public name;
    string public symbol;
    uint8 public immutable decimals;
    uint256 public totalSupply;
    address public admin;
    /// @notice The ChargingEscrow allowed to call `escrowPull` and `permitToEscrow`; set once.
    address public escrow;
    mapping(address => bool) public isMinter;
    mapping(address => mapping(address => uint256)) public allowance;
    mapping(address => Holder) private _holders;

    bytes32 private immutable _nameHash;
    bytes32 private immutable _cachedDomainSeparator;
    uint256 private immutable _cachedChainId;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);
    event AdminTransferred(address indexed previousAdmin, address indexed newAdmin);
    event MinterSet(address indexed account, bool allowed);
    event EscrowSet(address indexed escrow);

    error NotAdmin();
    error NotMinter();
    error NotEscrow();
    error EscrowAlreadySet();
    error ZeroAddress();
    error InsufficientBalance(address account, uint256 balance, uint256 needed);
    error InsufficientAllowance(address spender, uint256 allowance, uint256 needed);
    error SupplyCapExceeded();
    error PermitExpired(uint256 deadline);
    error InvalidSignature();

    constructor(string memory name_, string memory symbol_, uint8 decimals_, address admin_) {
        if (admin_ == address(0)) revert ZeroAddress();
        name = name_;
        symbol = symbol_;
        decimals = decimals_;
        admin = admin_;
        _nameHash = keccak256(bytes(name_));
        _cachedChainId = block.chainid;
        _cachedDomainSeparator = _buildDomainSeparator();
        emit AdminTransferred(address(0), admin_);
    }

    modifier onlyAdmin() {
        if (msg.sender != admin) revert NotAdmin();
        _;
    }

    modifier onlyEscrow() {
        if (msg.sender != escrow) revert NotEscrow();
        _;
    }

    // ---------------------------------------------------------------- ERC-20

    function balanceOf(address account) external view returns (uint256) {
        return _holders[account].balance;
    }

    function transfer(address to, uint256 value) external returns (bool) {
        _move(msg.sender, to, value);
        return true;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        _approve(msg.sender, spender, value);
        return true;
    }

    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        _spendAllowance(from, msg.sender, value);
        _move(from, to, value);
        return true;
    }

    // ---------------------------------------------------------------- EIP-2612

    function nonces(address owner) external view returns (uint256) {
        return _holders[owner].nonce;
    }

    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparator();
    }

    function permit(
        address owner,
        address spender,
        uint256 value,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external {
        _consumePermit(owner, spender, value, deadline, v, r, s);
        _approve(owner, spender, value);
    }

    // ---------------------------------------------------------------- MSP minter

    /// @notice Mints prepaid credit on a top-up the MSP has been paid for in fiat.
    function mint(address to, uint256 value) external {
        if (!isMinter[msg.sender]) revert NotMinter();
        if (to == address(0)) revert ZeroAddress();
        uint256 supply = totalSupply + value;
        if (supply > type(uint128).max) revert SupplyCapExceeded();
        totalSupply = supply;
        // Cannot overflow: every balance is at most the total supply, which fits in uint128.
        unchecked {
            _holders[to].balance += uint128(value);
        }
        emit Transfer(address(0), to, value);
    }

    /// @notice Burns tokens the MSP pays out in fiat; the holder consents through an allowance
    /// (approve or permit), so a minter can never burn anybody's tokens on its own.
    function burnFrom(address from, uint256 value) external {
        if (!isMinter[msg.sender]) revert NotMinter();
        _spendAllowance(from, msg.sender, value);
        Holder storage holder = _holders[from];
        uint256 balance = holder.balance;
        if (balance < value) revert InsufficientBalance(from, balance, value);
        unchecked {
            holder.balance = uint128(balance - value);
            totalSupply -= value;
        }
        emit Transfer(from, address(0), value);
    }

    // ---------------------------------------------------------------- admin

    function setMinter(address account, bool allowed) external onlyAdmin {
        if (account == address(0)) revert ZeroAddress();
        isMinter[account] = allowed;
        emit MinterSet(account, allowed);
    }

    /// @notice Links the escrow. Once only: the escrow's code is immutable, so what it may do
    /// with `escrowPull` and `permitToEscrow` is fixed forever once linked.
    function setEscrow(address escrow_) external onlyAdmin {
        if (escrow != address(0)) revert EscrowAlreadySet();
        if (escrow_ == address(0)) revert ZeroAddress();
        escrow = escrow_;
        emit EscrowSet(escrow_);
    }

    /// @notice Hands the admin role on; address(0) renounces it for good.
    function transferAdmin(address newAdmin) external onlyAdmin {
        emit AdminTransferred(admin, newAdmin);
        admin = newAdmin;
    }

    // ---------------------------------------------------------------- escrow hooks

    /// @notice Moves `value` from `from` into the escrow without an allowance.
    /// @dev Safe because only the linked escrow may call it and the escrow only ever passes its
    /// own `msg.sender` as `from` (a driver depositing its own tokens).
    function escrowPull(address from, uint256 value) external onlyEscrow {
        _move(from, msg.sender, value);
    }

    /// @notice An EIP-2612 permit for the escrow that moves the permitted value at once.
    /// @dev The owner signs the standard `Permit(owner, spender = escrow, value, nonce, deadline)`;
    /// the effect equals `permit` followed by the escrow's `transferFrom` of exactly `value`,
    /// without writing an allowance that would be spent in the same call.
    function permitToEscrow(
        address owner,
        uint256 value,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external onlyEscrow {
        _consumePermit(owner, msg.sender, value, deadline, v, r, s);
        _move(owner, msg.sender, value);
    }

    // ---------------------------------------------------------------- internals

    function _move(address from, address to, uint256 value) private {
        if (to == address(0)) revert ZeroAddress();
        Holder storage sender = _holders[from];
        uint256 balance = sender.balance;
        if (balance < value) revert InsufficientBalance(from, balance, value);
        unchecked {
            // Both fit in uint128: value <= balance and the sum of balances <= total supply.
            sender.balance = uint128(balance - value);
            _holders[to].balance += uint128(value);
        }
        emit Transfer(from, to, value);
    }

    function _approve(address owner, address spender, uint256 value) private {
        if (spender == address(0)) revert ZeroAddress();
        allowance[owner][spender] = value;
        emit Approval(owner, spender, value);
    }

    function _spendAllowance(address owner, address spender, uint256 value) private {
        uint256 current = allowance[owner][spender];
        if (current == type(uint256).max) return;
        if (current < value) revert InsufficientAllowance(spender, current, value);
        unchecked {
            allowance[owner][spender] = current - value;
        }
    }

    function _consumePermit(
        address owner,
        address spender,
        uint256 value,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) private {
        if (block.timestamp > deadline) revert PermitExpired(deadline);
        Holder storage holder = _holders[owner];
        uint64 nonce = holder.nonce;
        bytes32 structHash =
            keccak256(abi.encode(PERMIT_TYPEHASH, owner, spender, value, nonce, deadline));
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", _domainSeparator(), structHash));
        if (uint256(s) > _HALF_ORDER) revert InvalidSignature();
        address signer = ecrecover(digest, v, r, s);
        if (signer == address(0) || signer != owner) revert InvalidSignature();
        unchecked {
            holder.nonce = nonce + 1;
        }
    }

    function _domainSeparator() private view returns (bytes32) {
        return block.chainid == _cachedChainId ? _cachedDomainSeparator : _buildDomainSeparator();
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(
            abi.encode(_DOMAIN_TYPEHASH, _nameHash, _VERSION_HASH, block.chainid, address(this))
        );
    }
}
