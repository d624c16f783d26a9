// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title StationRegistry: the charging stations chargenet can open sessions at.
/// @notice Anyone may register a station and thereby become its CPO (owner). The CPO names the
/// operator keys (e.g. its gateway's) that act for the station. The owner or an operator updates
/// the station's details; only the owner manages operators and retires the station. A retired
/// station accepts no new sessions (its open ones can still be settled) and stays retired.
/// @dev Each station gets a compact uint32 index at registration: the escrow keeps the index in
/// its one-slot session record, and `settlerOf` resolves it with a single storage read.
contract StationRegistry {
    /// @notice What a CPO states about a station. The tariff and meter key live off chain and
    /// are pinned here by hash.
    struct StationInfo {
        int32 latitudeE6; // micro-degrees, [-90e6, 90e6]
        int32 longitudeE6; // micro-degrees, [-180e6, 180e6]
        uint8 connectorCount;
        uint32 maxPowerW;
        bytes32 tariffId; // the OCPI tariff id (ASCII, left-aligned, at most 32 bytes)
        bytes32 tariffHash; // keccak256 of the OCPI tariff document
        bytes32 meterKeyHash; // keccak256 of the meter's public key (signed meter values)
    }

    struct Station {
        // slot 0: everything the escrow reads on settle, in one word
        address cpo;
        bool active;
        uint8 connectorCount;
        int32 latitudeE6;
        int32 longitudeE6;
        // slot 1
        uint32 maxPowerW;
        // slots 2-5
        bytes32 id;
        bytes32 tariffId;
        bytes32 tariffHash;
        bytes32 meterKeyHash;
    }

    uint256 private constant _ACTIVE = 1 << 32;

    /// @notice Number of stations ever registered; indexes run from 1 to `stationCount`.
    uint32 public stationCount;
    mapping(uint32 => Station) private _stations;
    /// @dev id => index | _ACTIVE while the station accepts sessions: one read for `openRef`.
    mapping(bytes32 => uint256) private _refs;
    mapping(uint32 => mapping(address => bool)) private _operators;

    event StationRegistered(
        bytes32 indexed id,
        address indexed cpo,
        uint32 index,
        int32 latitudeE6,
        int32 longitudeE6,
        uint8 connectorCount,
        uint32 maxPowerW,
        bytes32 tariffId,
        bytes32 tariffHash,
        bytes32 meterKeyHash
    );
    event StationUpdated(
        bytes32 indexed id,
        address indexed by,
        int32 latitudeE6,
        int32 longitudeE6,
        uint8 connectorCount,
        uint32 maxPowerW,
        bytes32 tariffId,
        bytes32 tariffHash,
        bytes32 meterKeyHash
    );
    event OperatorSet(bytes32 indexed id, address indexed operator, bool allowed);
    event StationRetired(bytes32 indexed id, address indexed cpo);

    error ZeroStationId();
    error StationExists(bytes32 id);
    error UnknownStation(bytes32 id);
    error StationRetiredError(bytes32 id);
    error NotStationOwner(bytes32 id, address caller);
    error NotStationOwnerOrOperator(bytes32 id, address caller);
    error InvalidLocation(int32 latitudeE6, int32 longitudeE6);
    error InvalidConnectors(uint8 connectorCount, uint32 maxPowerW);
    error ZeroAddress();

    // ---------------------------------------------------------------- changes

    /// @notice Registers a station owned by the caller, who becomes its CPO.
    function register(bytes32 id, StationInfo calldata info, address[] calldata operators)
        external
        returns (uint32 index)
    {
        if (id == bytes32(0)) revert ZeroStationId();
        if (_refs[id] != 0) revert StationExists(id);
        _check(info);
        index = ++stationCount;
        Station storage record = _stations[index];
        record.cpo = msg.sender;
        record.active = true;
        record.id = id;
        _store(record, info);
        _refs[id] = uint256(index) | _ACTIVE;
        emit StationRegistered(
            id,
            msg.sender,
            index,
            info.latitudeE6,
            info.longitudeE6,
            info.connectorCount,
            info.maxPowerW,
            info.tariffId,
            info.tariffHash,
            info.meterKeyHash
        );
        for (uint256 i; i < operators.length; ++i) {
            _setOperator(index, id, operators[i], true);
        }
    }

    /// @notice Replaces the details of an active station (owner or operator).
    function update(bytes32 id, StationInfo calldata info) external {
        (uint32 index, Station storage record) = _active(id);
        if (msg.sender != record.cpo && !_operators[index][msg.sender]) {
            revert NotStationOwnerOrOperator(id, msg.sender);
        }
        _check(info);
        _store(record, info);
        emit StationUpdated(
            id,
            msg.sender,
            info.latitudeE6,
            info.longitudeE6,
            info.connectorCount,
            info.maxPowerW,
            info.tariffId,
            info.tariffHash,
            info.meterKeyHash
        );
    }

    /// @notice Allows or disallows an operator key (owner only). A retired station's keys can
    /// still be revoked, not added: they can settle its open sessions (`settlerOf`), so a leaked
    /// one must be able to go.
    function setOperator(bytes32 id, address operator, bool allowed) external {
        uint32 index = _indexOf(id);
        Station storage record = _stations[index];
        if (msg.sender != record.cpo) revert NotStationOwner(id, msg.sender);
        if (allowed && !record.active) revert StationRetiredError(id);
        _setOperator(index, id, operator, allowed);
    }

    /// @notice Retires a station for good (owner only): no new sessions open there.
    function retire(bytes32 id) external {
        (uint32 index, Station storage record) = _active(id);
        if (msg.sender != record.cpo) revert NotStationOwner(id, msg.sender);
        record.active = false;
        _refs[id] = index;
        emit StationRetired(id, msg.sender);
    }

    // ---------------------------------------------------------------- reads

    /// @notice The index of a station that accepts new sessions; reverts for unknown or retired.
    function openRef(bytes32 id) external view returns (uint32 index) {
        uint256 ref = _refs[id];
        if (ref == 0) revert UnknownStation(id);
        if (ref & _ACTIVE == 0) revert StationRetiredError(id);
        return uint32(ref);
    }

    /// @notice The CPO of station `index` if `caller` is its CPO or one of its operators, else
    /// address(0). Works for retired stations too, so their open sessions can still be closed.
    function settlerOf(uint32 index, address caller) external view returns (address cpo) {
        cpo = _stations[index].cpo;
        if (caller != cpo && !_operators[index][caller]) return address(0);
    }

    function indexOf(bytes32 id) external view returns (uint32) {
        return _indexOf(id);
    }

    function station(bytes32 id)
        external
        view
        returns (uint32 index, address cpo, bool active, StationInfo memory info)
    {
        index = _indexOf(id);
        Station storage s = _stations[index];
        return (index, s.cpo, s.active, _info(s));
    }

    function stationAt(uint32 index)
        external
        view
        returns (bytes32 id, address cpo, bool active, StationInfo memory info)
    {
        Station storage s = _stations[index];
        if (s.cpo == address(0)) revert UnknownStation(bytes32(uint256(index)));
        return (s.id, s.cpo, s.active, _info(s));
    }

    function isOperator(bytes32 id, address account) external view returns (bool) {
        return _operators[_indexOf(id)][account];
    }

    // ---------------------------------------------------------------- internals

    function _indexOf(bytes32 id) private view returns (uint32) {
        uint256 ref = _refs[id];
        if (ref == 0) revert UnknownStation(id);
        return uint32(ref);
    }

    function _active(bytes32 id) private view returns (uint32 index, Station storage record) {
        uint256 ref = _refs[id];
        if (ref == 0) revert UnknownStation(id);
        if (ref & _ACTIVE == 0) revert StationRetiredError(id);
        index = uint32(ref);
        record = _stations[index];
    }

    function _setOperator(uint32 index, bytes32 id, address operator, bool allowed) private {
        if (operator == address(0)) revert ZeroAddress();
        _operators[index][operator] = allowed;
        emit OperatorSet(id, operator, allowed);
    }

    function _check(StationInfo calldata info) private pure {
        if (
            info.latitudeE6 < -90_000_000 || info.latitudeE6 > 90_000_000
                || info.longitudeE6 < -180_000_000 || info.longitudeE6 > 180_000_000
        ) revert InvalidLocation(info.latitudeE6, info.longitudeE6);
        if (info.connectorCount == 0 || info.maxPowerW == 0) {
            revert InvalidConnectors(info.connectorCount, info.maxPowerW);
        }
    }

    function _store(Station storage s, StationInfo calldata info) private {
        s.latitudeE6 = info.latitudeE6;
        s.longitudeE6 = info.longitudeE6;
        s.connectorCount = info.connectorCount;
        s.maxPowerW = info.maxPowerW;
        s.tariffId = info.tariffId;
        s.tariffHash = info.tariffHash;
        s.meterKeyHash = info.meterKeyHash;
    }

    function _info(Station storage s) private view returns (StationInfo memory) {
        return StationInfo({
            latitudeE6: s.latitudeE6,
            longitudeE6: s.longitudeE6,
            connectorCount: s.connectorCount,
            maxPowerW: s.maxPowerW,
            tariffId: s.tariffId,
            tariffHash: s.tariffHash,
            meterKeyHash: s.meterKeyHash
        });
    }
}
