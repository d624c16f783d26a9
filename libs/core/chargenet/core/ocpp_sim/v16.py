"""An OCPP 1.6J charge point for tests, the demo and benchmarks (built on the ``ocpp`` library,
so the gateway is checked against an independent implementation of the protocol)."""

from __future__ import annotations

import asyncio
from typing import Any

from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import ClientConnection

from chargenet.core.ocpp_sim.base import SimulatorMixin, after, now_text, on
from chargenet.core.ocpp_sim.connect import Endpoint, Protocol, open_socket


class ChargePoint16(SimulatorMixin, ChargePoint):  # type: ignore[misc]
    """A 1.6J charge point. With ``auto_transactions`` a remote start (or stop) it accepted is
    followed by the StartTransaction (StopTransaction) a real charger would send."""

    def __init__(
        self,
        charge_point_id: str,
        connection: ClientConnection,
        *,
        answers: dict[str, str] | None = None,
        configuration: dict[str, str] | None = None,
        auto_transactions: bool = False,
        response_timeout: float = 10.0,
        check_messages: bool = True,
    ) -> None:
        super().__init__(charge_point_id, connection, response_timeout=response_timeout)
        self._init_simulator(answers, check_messages)
        self.configuration = dict(configuration or {"HeartbeatInterval": "300"})
        self.auto_transactions = auto_transactions
        self.meter_wh = 0
        self.transactions: dict[int, str] = {}  # transaction id -> id tag
        self.started: asyncio.Queue[tuple[int, str]] = asyncio.Queue()

    @classmethod
    async def connect(
        cls, endpoint: Endpoint, charge_point_id: str, **options: Any
    ) -> ChargePoint16:
        socket = await open_socket(endpoint, charge_point_id, Protocol.V16)
        charge_point = cls(charge_point_id, socket, **options)
        charge_point.run()
        return charge_point

    # -- messages to the central system --------------------------------------------------------
    async def boot(self, vendor: str = "chargenet-sim", model: str = "sim-16") -> Any:
        return await self.call(
            call.BootNotification(
                charge_point_vendor=vendor,
                charge_point_model=model,
                charge_point_serial_number=f"SN-{self.id}",
                firmware_version="1.0.0",
            ),
            suppress=False,
        )

    async def heartbeat(self) -> Any:
        return await self.call(call.Heartbeat(), suppress=False)

    async def status(self, connector_id: int, status: str, error_code: str = "NoError") -> Any:
        return await self.call(
            call.StatusNotification(
                connector_id=connector_id,
                error_code=error_code,
                status=status,
                timestamp=now_text(),
            ),
            suppress=False,
        )

    async def authorize(self, id_tag: str) -> str:
        result = await self.call(call.Authorize(id_tag=id_tag), suppress=False)
        return str(result.id_tag_info["status"])

    async def start_transaction(
        self, connector_id: int, id_tag: str, meter_start: int | None = None
    ) -> tuple[int, str]:
        """Returns (transaction id, idTagInfo status)."""
        result = await self.call(
            call.StartTransaction(
                connector_id=connector_id,
                id_tag=id_tag,
                meter_start=self.meter_wh if meter_start is None else meter_start,
                timestamp=now_text(),
            ),
            suppress=False,
        )
        status = str(result.id_tag_info["status"])
        if status == "Accepted":
            self.transactions[result.transaction_id] = id_tag
            self.started.put_nowait((result.transaction_id, id_tag))
        return result.transaction_id, status

    async def meter_values(
        self,
        connector_id: int,
        transaction_id: int | None,
        energy_wh: int,
        *,
        power_w: int | None = None,
        signed: str | None = None,
    ) -> Any:
        """One reading; ``signed`` is an OCMF (or other) string sent as format SignedData."""
        self.meter_wh = energy_wh
        sampled: list[dict[str, Any]] = [
            {"value": str(energy_wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}
        ]
        if power_w is not None:
            sampled.append({"value": str(power_w), "measurand": "Power.Active.Import", "unit": "W"})
        if signed is not None:
            sampled.append(
                {
                    "value": signed,
                    "format": "SignedData",
                    "measurand": "Energy.Active.Import.Register",
                    "context": "Sample.Periodic",
                }
            )
        return await self.call(
            call.MeterValues(
                connector_id=connector_id,
                transaction_id=transaction_id,
                meter_value=[{"timestamp": now_text(), "sampledValue": sampled}],
            ),
            suppress=False,
        )

    async def stop_transaction(
        self,
        transaction_id: int,
        meter_stop: int,
        *,
        reason: str = "Local",
        signed: list[str] | None = None,
    ) -> Any:
        data = None
        if signed:
            data = [
                {
                    "timestamp": now_text(),
                    "sampledValue": [
                        {"value": value, "format": "SignedData", "context": "Transaction.End"}
                        for value in signed
                    ],
                }
            ]
        self.meter_wh = meter_stop
        self.transactions.pop(transaction_id, None)
        return await self.call(
            call.StopTransaction(
                transaction_id=transaction_id,
                meter_stop=meter_stop,
                timestamp=now_text(),
                reason=reason,
                transaction_data=data,
            ),
            suppress=False,
        )

    async def data_transfer(self, vendor_id: str, data: str | None = None) -> str:
        result = await self.call(call.DataTransfer(vendor_id=vendor_id, data=data), suppress=False)
        return str(result.status)

    # -- commands from the central system ------------------------------------------------------
    @on(Action.remote_start_transaction)
    def _remote_start(self, id_tag: str, **rest: Any) -> Any:
        return call_result.RemoteStartTransaction(
            status=self._record("RemoteStartTransaction", {"id_tag": id_tag, **rest})
        )

    @after(Action.remote_start_transaction)
    async def _after_remote_start(self, id_tag: str, connector_id: int = 1, **_: Any) -> None:
        if (
            self.auto_transactions
            and self.answers.get("RemoteStartTransaction", "Accepted") == "Accepted"
        ):
            await self.start_transaction(connector_id, id_tag)

    @on(Action.remote_stop_transaction)
    def _remote_stop(self, transaction_id: int) -> Any:
        return call_result.RemoteStopTransaction(
            status=self._record("RemoteStopTransaction", {"transaction_id": transaction_id})
        )

    @after(Action.remote_stop_transaction)
    async def _after_remote_stop(self, transaction_id: int) -> None:
        if self.auto_transactions and transaction_id in self.transactions:
            await self.stop_transaction(transaction_id, self.meter_wh, reason="Remote")

    @on(Action.reset)
    def _reset(self, type: str) -> Any:
        return call_result.Reset(status=self._record("Reset", {"type": type}))

    @on(Action.change_availability)
    def _change_availability(self, connector_id: int, type: str) -> Any:
        payload = {"connector_id": connector_id, "type": type}
        return call_result.ChangeAvailability(status=self._record("ChangeAvailability", payload))

    @on(Action.trigger_message)
    def _trigger_message(self, requested_message: str, **rest: Any) -> Any:
        payload = {"requested_message": requested_message, **rest}
        return call_result.TriggerMessage(status=self._record("TriggerMessage", payload))

    @after(Action.trigger_message)
    async def _after_trigger(self, requested_message: str, **_: Any) -> None:
        if self.answers.get("TriggerMessage", "Accepted") != "Accepted":
            return
        if requested_message == "Heartbeat":
            await self.heartbeat()
        elif requested_message == "StatusNotification":
            await self.status(1, "Available")

    @on(Action.unlock_connector)
    def _unlock_connector(self, connector_id: int) -> Any:
        status = self._record("UnlockConnector", {"connector_id": connector_id})
        return call_result.UnlockConnector(status="Unlocked" if status == "Accepted" else status)

    @on(Action.get_configuration)
    def _get_configuration(self, key: list[str] | None = None) -> Any:
        self._record("GetConfiguration", {"key": key})
        wanted = key or list(self.configuration)
        known = [k for k in wanted if k in self.configuration]
        return call_result.GetConfiguration(
            configuration_key=[
                {"key": k, "readonly": False, "value": self.configuration[k]} for k in known
            ],
            unknown_key=[k for k in wanted if k not in self.configuration] or None,
        )

    @on(Action.change_configuration)
    def _change_configuration(self, key: str, value: str) -> Any:
        status = self._record("ChangeConfiguration", {"key": key, "value": value})
        if status == "Accepted":
            self.configuration[key] = value
        return call_result.ChangeConfiguration(status=status)

    @on(Action.clear_cache)
    def _clear_cache(self) -> Any:
        return call_result.ClearCache(status=self._record("ClearCache", {}))

    @on(Action.data_transfer)
    def _data_transfer(self, vendor_id: str, **rest: Any) -> Any:
        status = self._record("DataTransfer", {"vendor_id": vendor_id, **rest})
        return call_result.DataTransfer(status=status)
