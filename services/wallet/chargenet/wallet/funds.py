"""Top-ups and payouts: fiat in, tokens minted into the escrow deposit; tokens burned, fiat out.

Each is a persisted row that moves forward one chain step at a time, each step sent through the
signer under an idempotency key derived from the payment reference. A repeated request (or a
retry after a crash) resumes the row where it stopped and never repeats a step that happened:
the same payment reference mints once.

Top-up: capture -> ``mint(driver, amount)`` by the minter -> ``depositWithPermit`` relayed by the
relayer with the driver's EIP-2612 permit (signed in the signer with the driver's key).
Payout: ``withdraw`` by the driver's key (for the part in the escrow deposit; the relayer first
gives the address a little ether for gas) -> the driver's permit for the minter, relayed ->
``burnFrom`` by the minter -> the provider pays out.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import sqlalchemy as sa
from pydantic import Field
from sqlalchemy.exc import IntegrityError

from chargenet.core.chain import permit_typed_data
from chargenet.core.db import Database
from chargenet.core.db.tables import utcnow
from chargenet.core.errors import ChargenetError, Conflict, Unprocessable
from chargenet.core.signer_client import SignerClient, SignerError, Transaction, TxStatus
from chargenet.wallet import metrics
from chargenet.wallet.chain import ChainReader
from chargenet.wallet.locks import KeyedLocks
from chargenet.wallet.models import MAX_AMOUNT, ChargingSession, Driver, Payout, TopUp
from chargenet.wallet.payments import PaymentError, PaymentProvider
from chargenet.wallet.settings import WalletSettings

#: Permit signatures are retried this often with a fresh nonce (another permit of the same
#: driver may have used the nonce first), then the step fails.
MAX_PERMIT_ATTEMPTS = 3
PERMIT_LIFETIME_SECONDS = 3600
#: A payable fragment that sends ether to an address through the signer (which sends contract
#: calls only): an externally owned account accepts the value and ignores the 4 bytes of data.
FUND_ABI = [
    {
        "type": "function",
        "name": "fund",
        "inputs": [],
        "outputs": [],
        "stateMutability": "payable",
    }
]
#: ``withdraw`` uses about 35,000 gas; the rest is margin.
WITHDRAW_GAS = 100_000
#: Session states whose maximum the wallet counts as promised but not yet locked on chain.
UNLOCKED_STATES = ("requested",)


class ServiceUnavailable(ChargenetError):
    status_code = 503
    code = "unavailable"


class ChainStepFailed(ChargenetError):
    status_code = 502
    code = "chain_step_failed"


#: An amount of token base units in a request body. Strict: lax mode took a float or a string
#: for an integer, so 9007199254740993.0 topped up 9007199254740992 and "5" passed as money.
TokenAmount = Annotated[int, Field(gt=0, strict=True)]


def check_amount(amount: int, field: str = "amount") -> int:
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
        raise Unprocessable(f"{field}: a positive integer of token base units up to {MAX_AMOUNT}")
    return amount


def promised(db: Database, driver_id: str) -> int:
    """Maxima of the driver's sessions requested but not yet locked by the escrow."""
    with db.session() as session:
        total = session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(ChargingSession.max_amount), 0)).where(
                ChargingSession.driver_id == driver_id,
                ChargingSession.state.in_(UNLOCKED_STATES),
            )
        )
    return int(total or 0)


_Row = TypeVar("_Row", TopUp, Payout)


class Funds:
    def __init__(
        self,
        settings: WalletSettings,
        db: Database,
        signer: SignerClient,
        chain: ChainReader,
        provider: PaymentProvider,
    ) -> None:
        self.db = db
        self.signer = signer
        self.chain = chain
        self.provider = provider
        self.currency = settings.wallet_currency
        self._token = settings.wallet_signer_token_contract
        self._escrow = settings.wallet_signer_escrow_contract
        self._minter = settings.wallet_minter_key
        self._relayer = settings.wallet_relayer_key
        self._gas_wei = settings.wallet_payout_gas_wei
        self._wait = settings.wallet_chain_wait_seconds
        self._minter_address: str | None = None
        # Within one replica, a driver's permits are signed one at a time (they share the
        # token's permit nonce) and a reference is worked on by one request at a time.
        self._driver_locks = KeyedLocks()
        self._reference_locks = KeyedLocks()

    # -- top-up ----------------------------------------------------------------------------------

    def top_up(self, driver: Driver, reference: str, amount: int) -> TopUp:
        check_amount(amount)
        _check_reference(reference, "payment_reference")
        with self._reference_locks.hold(f"topup:{reference}"):
            row = self.find_topup(reference)
            if row is None:
                try:
                    self.provider.capture(reference, amount, self.currency)
                except PaymentError as error:
                    metrics.TOPUPS.labels(outcome="refused").inc()
                    raise Unprocessable(f"payment_reference: {error}") from None
                row = self._insert_topup(driver, reference, amount)
            if row.driver_id != driver.driver_id or row.amount != amount:
                metrics.TOPUPS.labels(outcome="conflict").inc()
                raise Conflict(f"payment_reference: {reference} was used for another top-up")
            elif row.status in ("deposited", "failed"):
                metrics.TOPUPS.labels(outcome="repeated").inc()
                return row
            started = time.perf_counter()
            row = self._advance_topup(driver, row)
            metrics.OPERATION_SECONDS.labels(operation="topup").observe(
                time.perf_counter() - started
            )
        metrics.TOPUPS.labels(outcome=row.status).inc()
        if row.status == "deposited":
            metrics.TOPUP_AMOUNT.observe(amount)
        self.chain.forget(driver.address)
        return row

    def _advance_topup(self, driver: Driver, row: TopUp) -> TopUp:
        ref = row.payment_reference
        if row.status == "captured":
            tx = self._send_and_wait(
                f"wallet:topup:{ref}:mint",
                self._minter,
                "mint",
                [driver.address, row.amount],
                contract=self._token,
            )
            if tx.status is TxStatus.FAILED:
                return self._update_topup(ref, status="failed", error=_why(tx))
            row = self._update_topup(ref, status="minted", mint_tx=tx.tx_hash)
        while row.status == "minted":
            with self._driver_locks.hold(driver.driver_id):
                if row.permit is None:
                    permit = self._sign_permit(driver, self.chain.escrow.address, row.amount)
                    row = self._update_topup(ref, permit=json.dumps(permit))
                permit = json.loads(row.permit or "{}")
                tx = self._send_and_wait(
                    f"wallet:topup:{ref}:deposit:{row.deposit_attempt}",
                    self._relayer,
                    "depositWithPermit",
                    [
                        driver.address,
                        row.amount,
                        permit["deadline"],
                        permit["v"],
                        permit["r"],
                        permit["s"],
                    ],
                    contract=self._escrow,
                )
            if tx.status is not TxStatus.FAILED:
                row = self._update_topup(ref, status="deposited", deposit_tx=tx.tx_hash)
            elif row.deposit_attempt + 1 < MAX_PERMIT_ATTEMPTS:
                row = self._update_topup(ref, deposit_attempt=row.deposit_attempt + 1, permit=None)
            else:
                # The minted tokens stay in the driver's token balance, which counts as balance.
                row = self._update_topup(ref, status="failed", error=_why(tx))
        return row

    def find_topup(self, reference: str) -> TopUp | None:
        if "\0" in reference:  # no reference holds one, and PostgreSQL cannot compare it (500)
            return None
        with self.db.session() as session:
            return session.get(TopUp, reference)

    def _insert_topup(self, driver: Driver, reference: str, amount: int) -> TopUp:
        """The new top-up, or the one another replica stored under the reference meanwhile (the
        reference lock is per process; the provider's capture is idempotent by reference)."""
        row = TopUp(
            payment_reference=reference,
            driver_id=driver.driver_id,
            amount=amount,
            status="captured",
            deposit_attempt=0,
        )
        return self._insert_once(row, lambda: self.find_topup(reference))

    def _update_topup(self, reference: str, **changes: Any) -> TopUp:
        with self.db.session() as session:
            row = session.get(TopUp, reference, with_for_update=self.db.is_postgres)
            assert row is not None
            for name, value in changes.items():
                setattr(row, name, value)
            row.updated_at = utcnow()
        return row

    # -- payout ----------------------------------------------------------------------------------

    def pay_out(self, driver: Driver, reference: str, amount: int) -> Payout:
        check_amount(amount)
        _check_reference(reference, "payout_reference")
        with self._reference_locks.hold(f"payout:{reference}"):
            row = self._payout(reference)
            if row is None:
                balance = self.chain.balance(driver.address, fresh=True)
                available = balance.total - promised(self.db, driver.driver_id)
                if amount > available:
                    metrics.PAYOUTS.labels(outcome="refused").inc()
                    raise Unprocessable(
                        f"amount: {amount} is above the available balance of {available}"
                    )
                row = self._insert_payout(
                    driver, reference, amount, withdraw=max(0, amount - balance.token)
                )
            if row.driver_id != driver.driver_id or row.amount != amount:
                raise Conflict(f"payout_reference: {reference} was used for another payout")
            if row.status not in ("paid", "failed"):
                started = time.perf_counter()
                row = self._advance_payout(driver, row)
                metrics.OPERATION_SECONDS.labels(operation="payout").observe(
                    time.perf_counter() - started
                )
        metrics.PAYOUTS.labels(outcome=row.status).inc()
        self.chain.forget(driver.address)
        return row

    def _advance_payout(self, driver: Driver, row: Payout) -> Payout:
        ref = row.payout_reference
        if row.status == "requested":
            if row.withdraw_amount > 0:
                if self.chain.ether(driver.address) < self._gas_wei // 2:
                    gas = self._send_and_wait(
                        f"wallet:payout:{ref}:gas",
                        self._relayer,
                        "fund",
                        [],
                        address=driver.address,
                        abi=FUND_ABI,
                        value_wei=self._gas_wei,
                    )
                    if gas.status is TxStatus.FAILED:
                        return self._update_payout(ref, status="failed", error=_why(gas))
                tx = self._send_and_wait(
                    f"wallet:payout:{ref}:withdraw",
                    driver.key_alias,
                    "withdraw",
                    [driver.address, row.withdraw_amount],
                    contract=self._escrow,
                    # A fixed limit: an estimate would need the block's whole gas limit in ether
                    # on some nodes, far more than the driver's address is given.
                    gas_limit=WITHDRAW_GAS,
                )
                if tx.status is TxStatus.FAILED:
                    return self._update_payout(ref, status="failed", error=_why(tx))
            row = self._update_payout(ref, status="withdrawn")
        while row.status == "withdrawn":
            with self._driver_locks.hold(driver.driver_id):
                if row.permit is None:
                    permit = self._sign_permit(driver, self._minter_addr(), row.amount)
                    row = self._update_payout(ref, permit=json.dumps(permit))
                permit = json.loads(row.permit or "{}")
                tx = self._send_and_wait(
                    f"wallet:payout:{ref}:permit:{row.permit_attempt}",
                    self._relayer,
                    "permit",
                    [
                        driver.address,
                        self._minter_addr(),
                        row.amount,
                        permit["deadline"],
                        permit["v"],
                        permit["r"],
                        permit["s"],
                    ],
                    contract=self._token,
                )
            if tx.status is TxStatus.FAILED:
                if row.permit_attempt + 1 >= MAX_PERMIT_ATTEMPTS:
                    return self._update_payout(ref, status="failed", error=_why(tx))
                row = self._update_payout(ref, permit_attempt=row.permit_attempt + 1, permit=None)
                continue
            burn = self._send_and_wait(
                f"wallet:payout:{ref}:burn",
                self._minter,
                "burnFrom",
                [driver.address, row.amount],
                contract=self._token,
            )
            if burn.status is TxStatus.FAILED:
                return self._update_payout(ref, status="failed", error=_why(burn))
            row = self._update_payout(ref, status="burned", burn_tx=burn.tx_hash)
        if row.status == "burned":
            try:
                self.provider.pay_out(ref, driver.driver_id, row.amount, self.currency)
            except PaymentError as error:
                # The tokens are burned: the fiat is owed. Kept "burned" so a retry pays it.
                raise ServiceUnavailable(f"payout {ref}: the provider refused: {error}") from None
            row = self._update_payout(ref, status="paid")
        return row

    def _payout(self, reference: str) -> Payout | None:
        with self.db.session() as session:
            return session.get(Payout, reference)

    def _insert_payout(self, driver: Driver, reference: str, amount: int, withdraw: int) -> Payout:
        """The new payout, or the one another replica stored under the reference meanwhile."""
        row = Payout(
            payout_reference=reference,
            driver_id=driver.driver_id,
            amount=amount,
            status="requested",
            withdraw_amount=withdraw,
            permit_attempt=0,
        )
        return self._insert_once(row, lambda: self._payout(reference))

    def _insert_once(self, row: _Row, stored: Callable[[], _Row | None]) -> _Row:
        try:
            with self.db.session() as session:
                session.add(row)
        except IntegrityError:
            found = stored()
            if found is None:
                raise
            return found
        return row

    def _update_payout(self, reference: str, **changes: Any) -> Payout:
        with self.db.session() as session:
            row = session.get(Payout, reference, with_for_update=self.db.is_postgres)
            assert row is not None
            for name, value in changes.items():
                setattr(row, name, value)
            row.updated_at = utcnow()
        return row

    # -- chain steps -----------------------------------------------------------------------------

    def _minter_addr(self) -> str:
        if self._minter_address is None:
            for key in self.signer.list_keys():
                if key.alias == self._minter:
                    self._minter_address = key.address
                    break
            else:
                raise ServiceUnavailable(f"the signer lists no key {self._minter!r} for the wallet")
        return self._minter_address

    def _sign_permit(self, driver: Driver, spender: str, value: int) -> dict[str, Any]:
        """The driver's EIP-2612 permit for ``spender``, signed by the driver's key (signer)."""
        deadline = self.chain.timestamp() + PERMIT_LIFETIME_SECONDS
        typed = permit_typed_data(
            chain_id=self.chain.chain_id,
            token=self.chain.token.address,
            token_name=self.chain.token_name,
            owner=driver.address,
            spender=spender,
            value=value,
            nonce=self.chain.permit_nonce(driver.address),
            deadline=deadline,
        )
        signature = self._sign(driver.key_alias, typed).signature
        return {
            "deadline": deadline,
            "r": "0x" + signature[:32].hex(),
            "s": "0x" + signature[32:64].hex(),
            "v": signature[64],
        }

    def _sign(self, alias: str, typed: dict[str, Any]) -> Any:
        try:
            return self.signer.sign_typed_data(alias, typed)
        except SignerError as error:
            raise ServiceUnavailable(f"the signer refused to sign: {error.detail}") from None

    def _send_and_wait(
        self, key: str, from_key: str, function: str, args: list[Any], **target: Any
    ) -> Transaction:
        try:
            tx = self.signer.send_transaction(key, from_key, function, args, **target)
            if tx.status.is_terminal:
                return tx
            return self.signer.wait([key], until=TxStatus.MINED, timeout=self._wait)[key]
        except SignerError as error:
            raise ServiceUnavailable(f"the signer refused {function}: {error.detail}") from None
        except TimeoutError:
            raise ServiceUnavailable(
                f"{function} is not mined yet; repeat the request to resume"
            ) from None


def _why(tx: Transaction) -> str:
    return tx.revert_reason or tx.error or "failed on chain"


_REFERENCE = re.compile(r"[\x21-\x7e]{1,120}")


def _check_reference(reference: str, field: str) -> None:
    # It becomes part of the signer's idempotency keys, which are printable ASCII.
    # Whole: ``$`` matched before a final newline, and the signer refused the key (503) after
    # the payment was captured.
    if not _REFERENCE.fullmatch(reference):
        raise Unprocessable(f"{field}: 1-120 printable ASCII characters without spaces")
