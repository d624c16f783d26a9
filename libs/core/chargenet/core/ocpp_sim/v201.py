"""An OCPP 2.0.1 charging station for tests, the demo and benchmarks (on the ``ocpp`` library)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action
from websockets.asyncio.client import ClientConnection

from chargenet.core.ocpp_sim.base import SimulatorMixin, after, now_text, on
from chargenet.core.ocpp_sim.connect import Endpoint, Protocol, open_socket


class ChargePoint201(SimulatorMixin, ChargePoint):  # type: ignore[misc]
    """A 2.0.1 station. With ``auto_transactions`` an accepted RequestStart/StopTransaction is
    followed by the TransactionEvent Started/Ended a real station would send."""

    def __init__(
        self,
        charge_point_id: str,
        connection: ClientConnection,
        *,
        answers: dict[str, str] | None = None,
        variables: dict[tuple[str, str], str] | None = None,
        auto_transactions: bool = False,
        response_timeout: float = 10.0,
        check_messages: bool = True,
    ) -> None:
        super().__init__(charge_point_id, connection, response_timeout=response_timeout)
        self._init_simulator(answers, check_messages)
        self.variables = dict(variables or {("OCPPCommCtrlr", "HeartbeatInterval"): "300"})
        self.auto_transactions = auto_transactions
        self.meter_wh = 0
        self._seq = itertools.count()
        self.transactions: dict[str, str] = {}  # transaction id -> id token
        self.started: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    @classmethod
    async def connect(
        cls, endpoint: Endpoint, charge_point_id: str, **options: Any
    ) -> ChargePoint201:
        socket = await open_socket(endpoint, charge_point_id, Protocol.V201)
        station = cls(charge_point_id, socket, **options)
        station.run()
        return station

    # -- messages to the CSMS ----------------------------------------------------------------
    async def boot(self, vendor: str = "chargenet-sim", model: str = "sim-201") -> Any:
        return await self.call(
            call.BootNotification(
                charging_station={
                    "vendor_name": vendor,
                    "model": model,
                    "serial_number": f"SN-{self.id}",
                    "firmware_version": "1.0.0",
                },
                reason="PowerUp",
            ),
            suppress=False,
        )

    async def heartbeat(self) -> Any:
        return await self.call(call.Heartbeat(), suppress=False)

    async def status(self, evse_id: int, connector_id: int, status: str) -> Any:
        return await self.call(
            call.StatusNotification(
                timestamp=now_text(),
                connector_status=status,
                evse_id=evse_id,
                connector_id=connector_id,
            ),
            suppress=False,
        )

    async def authorize(self, id_token: str, token_type: str = "ISO14443") -> str:  # noqa: S107 - a token kind
        result = await self.call(
            call.Authorize(id_token={"id_token": id_token, "type": token_type}), suppress=False
        )
        return str(result.id_token_info["status"])

    @staticmethod
    def meter_value(energy_wh: int, signed: dict[str, str] | None = None) -> dict[str, Any]:
        """A MeterValue; ``signed`` is a signedMeterValue object (signedMeterData is OCMF)."""
        sampled: dict[str, Any] = {
            "value": energy_wh,
            "measurand": "Energy.Active.Import.Register",
            "unitOfMeasure": {"unit": "Wh"},
        }
        if signed is not None:
            sampled["signedMeterValue"] = signed
        return {"timestamp": now_text(), "sampledValue": [sampled]}

    async def transaction_event(
        self,
        event_type: str,
        transaction_id: str,
        *,
        trigger: str,
        id_token: str | None = None,
        energy_wh: int | None = None,
        signed: dict[str, str] | None = None,
        evse_id: int = 1,
        stopped_reason: str | None = None,
    ) -> Any:
        info: dict[str, Any] = {"transaction_id": transaction_id}
        if stopped_reason:
            info["stopped_reason"] = stopped_reason
        if energy_wh is not None:
            self.meter_wh = energy_wh
        return await self.call(
            call.TransactionEvent(
                event_type=event_type,
                timestamp=now_text(),
                trigger_reason=trigger,
                seq_no=next(self._seq),
                transaction_info=info,
                id_token=None if id_token is None else {"id_token": id_token, "type": "ISO14443"},
                evse={"id": evse_id, "connector_id": 1},
                meter_value=None if energy_wh is None else [self.meter_value(energy_wh, signed)],
            ),
            suppress=False,
        )

    async def start_transaction(
        self, id_token: str, energy_wh: int = 0, transaction_id: str | None = None
    ) -> tuple[str, str]:
        """TransactionEvent(Started) with the token; returns (transaction id, token status)."""
        transaction = transaction_id or uuid.uuid4().hex[:16]
        result = await self.transaction_event(
            "Started", transaction, trigger="Authorized", id_token=id_token, energy_wh=energy_wh
        )
        status = str((result.id_token_info or {}).get("status", "Accepted"))
        if status == "Accepted":
            self.transactions[transaction] = id_token
            self.started.put_nowait((transaction, id_token))
        return transaction, status

    async def stop_transaction(
        self, transaction_id: str, energy_wh: int, signed: dict[str, str] | None = None
    ) -> Any:
        self.transactions.pop(transaction_id, None)
        return await self.transaction_event(
            "Ended",
            transaction_id,
            trigger="StopAuthorized",
            energy_wh=energy_wh,
            signed=signed,
            stopped_reason="Local",
        )

    async def meter_values(self, evse_id: int, energy_wh: int) -> Any:
        return await self.call(
            call.MeterValues(evse_id=evse_id, meter_value=[self.meter_value(energy_wh)]),
            suppress=False,
        )

    async def data_transfer(self, vendor_id: str, data: str | None = None) -> str:
        result = await self.call(call.DataTransfer(vendor_id=vendor_id, data=data), suppress=False)
        return str(result.status)

    # -- commands from the CSMS --------------------------------------------------------------
    @on(Action.request_start_transaction)
    def _request_start(self, id_token: dict[str, Any], remote_start_id: int, **rest: Any) -> Any:
        payload = {"id_token": id_token, "remote_start_id": remote_start_id, **rest}
        return call_result.RequestStartTransaction(
            status=self._record("RequestStartTransaction", payload)
        )

    @after(Action.request_start_transaction)
    async def _after_request_start(self, id_token: dict[str, Any], **_: Any) -> None:
        if (
            self.auto_transactions
            and self.answers.get("RequestStartTransaction", "Accepted") == "Accepted"
        ):
            await self.start_transaction(str(id_token["id_token"]), self.meter_wh)

    @on(Action.request_stop_transaction)
    def _request_stop(self, transaction_id: str, **rest: Any) -> Any:
        status = self._record("RequestStopTransaction", {"transaction_id": transaction_id, **rest})
        return call_result.RequestStopTransaction(status=status)

    @after(Action.request_stop_transaction)
    async def _after_request_stop(self, transaction_id: str, **_: Any) -> None:
        if self.auto_transactions and transaction_id in self.transactions:
            await self.stop_transaction(transaction_id, self.meter_wh)

    @on(Action.reset)
    def _reset(self, type: str, **rest: Any) -> Any:
        return call_result.Reset(status=self._record("Reset", {"type": type, **rest}))

    @on(Action.change_availability)
    def _change_availability(self, operational_status: str, **rest: Any) -> Any:
        payload = {"operational_status": operational_status, **rest}
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
            await self.status(1, 1, "Available")

    @on(Action.unlock_connector)
    def _unlock_connector(self, evse_id: int, connector_id: int, **_: Any) -> Any:
        status = self._record("UnlockConnector", {"evse_id": evse_id, "connector_id": connector_id})
        return call_result.UnlockConnector(status="Unlocked" if status == "Accepted" else status)

    @on(Action.get_variables)
    def _get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        self._record("GetVariables", {"get_variable_data": get_variable_data})
        results = []
        for item in get_variable_data:
            key = (item["component"]["name"], item["variable"]["name"])
            value = self.variables.get(key)
            results.append(
                {
                    "attribute_status": "Accepted" if value is not None else "UnknownVariable",
                    "component": item["component"],
                    "variable": item["variable"],
                    **({"attribute_value": value} if value is not None else {}),
                }
            )
        return call_result.GetVariables(get_variable_result=results)

    @on(Action.set_variables)
    def _set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        self._record("SetVariables", {"set_variable_data": set_variable_data})
        results = []
        for item in set_variable_data:
            key = (item["component"]["name"], item["variable"]["name"])
            self.variables[key] = str(item["attribute_value"])
            results.append(
                {
                    "attribute_status": "Accepted",
                    "component": item["component"],
                    "variable": item["variable"],
                }
            )
        return call_result.SetVariables(set_variable_result=results)

    @on(Action.clear_cache)
    def _clear_cache(self, **_: Any) -> Any:
        return call_result.ClearCache(status=self._record("ClearCache", {}))

    @on(Action.data_transfer)
    def _data_transfer(self, vendor_id: str, **rest: Any) -> Any:
        status = self._record("DataTransfer", {"vendor_id": vendor_id, **rest})
        return call_result.DataTransfer(status=status)
