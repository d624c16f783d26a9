// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {NaiveToken} from "./NaiveToken.sol";
import {StationRegistry} from "../src/StationRegistry.sol";

/// @title NaiveEscrow: the straightforward per-session escrow chargenet's gas is compared with.
/// @notice The driver approves the escrow, opens (transferFrom into the escrow) and the station's
/// CPO or operator settles with two transfers. It uses the same StationRegistry as chargenet, so
/// the comparison isolates the escrow's design. Benchmarks only; not deployed by chargenet.
contract NaiveEscrow {
    struct Session {
        address driver;
        bool settled;
        uint256 stationIndex;
        uint256 maximum;
        uint256 expiry;
        bytes32 cdrHash;
    }

    NaiveToken public immutable token;
    StationRegistry public immutable registry;
    mapping(bytes32 => Session) public sessions;

    event SessionOpened(
        bytes32 indexed sessionId, address indexed driver, bytes32 indexed stationId, uint256 maximum
    );
    event SessionSettled(bytes32 indexed sessionId, address indexed cpo, uint256 amount);

    constructor(NaiveToken token_, StationRegistry registry_) {
        token = token_;
        registry = registry_;
    }

    function open(bytes32 sessionId, bytes32 stationId, uint256 maximum, uint256 expiry) external {
        require(sessions[sessionId].driver == address(0), "session exists");
        require(expiry > block.timestamp, "expired");
        uint256 stationIndex = registry.openRef(stationId);
        require(token.transferFrom(msg.sender, address(this), maximum), "transfer failed");
        sessions[sessionId] = Session(msg.sender, false, stationIndex, maximum, expiry, bytes32(0));
        emit SessionOpened(sessionId, msg.sender, stationId, maximum);
    }

    function settle(bytes32 sessionId, uint256 amount, bytes32 cdrHash) external {
        Session storage session = sessions[sessionId];
        require(session.driver != address(0) && !session.settled, "not open");
        address cpo = registry.settlerOf(uint32(session.stationIndex), msg.sender);
        require(cpo != address(0), "not operator");
        require(amount <= session.maximum, "above maximum");
        session.settled = true;
        session.cdrHash = cdrHash;
        require(token.transfer(cpo, amount), "transfer failed");
        require(token.transfer(session.driver, session.maximum - amount), "transfer failed");
        emit SessionSettled(sessionId, cpo, amount);
    }
}
