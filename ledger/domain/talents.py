"""Talents: who the fund pays, and when they may no longer receive anything."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from ledger.domain.base import LedgerAggregate, stream_id
from ledger.domain.errors import InvalidState, TalentDeparted, ValidationFailed


class Talent(LedgerAggregate):
    """An introduced talent, whose departure can make grants repayable.

    Its name is only ever held sealed (`ledger.usecases.personal`): events cannot be
    erased, a destroyed key can."""

    @staticmethod
    def create_id(talent_id: str) -> UUID:
        return stream_id("talents", talent_id)

    @staticmethod
    def check_commitment(arrived_on: date, service_commitment_until: date) -> None:
        """A talent commits to serve from arrival on; checked before registering."""
        if service_commitment_until < arrived_on:
            raise ValidationFailed(
                "service_commitment_until", "the service commitment ends before arrival"
            )

    class Registered(LedgerAggregate.Created):
        class_version = 2  # 2: the bank account (sealed), which v1 had not
        talent_id: str
        sealed_name: str
        category: str
        employer: str
        arrived_on: date
        service_commitment_until: date
        fingerprint: str
        sealed_bank_account: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["sealed_bank_account"] = None

    @event(Registered)
    def __init__(
        self,
        talent_id: str,
        sealed_name: str,
        category: str,
        employer: str,
        arrived_on: date,
        service_commitment_until: date,
        fingerprint: str,
        sealed_bank_account: str | None = None,
    ) -> None:
        self.talent_id = talent_id
        self.sealed_name = sealed_name
        self.sealed_bank_account = sealed_bank_account
        self.category = category
        self.employer = employer
        self.arrived_on = arrived_on
        self.service_commitment_until = service_commitment_until
        self.fingerprint = fingerprint
        self.departed_on: date | None = None
        self.departure_reason: str | None = None
        self.personal_data_erased = False

    @property
    def status(self) -> str:
        return "active" if self.departed_on is None else "departed"

    def check_may_receive(self, on: date | None = None) -> None:
        """Refuse what a departed talent may no longer receive: money dated after the
        departure (`on`), or a new benefit (`on` None) once they departed at all."""
        if self.departed_on is None:
            return
        if on is None:
            raise TalentDeparted(f"talent {self.talent_id} departed on {self.departed_on}")
        if on > self.departed_on:
            raise TalentDeparted(
                f"talent {self.talent_id} departed on {self.departed_on}, before value date {on}"
            )

    class Departed(LedgerAggregate.Event):
        departed_on: date
        reason: str

    def depart(self, departed_on: date, reason: str) -> None:
        if self.departed_on is not None:
            if (departed_on, reason) != (self.departed_on, self.departure_reason):
                raise InvalidState(f"talent {self.talent_id} departed on {self.departed_on}")
            return
        if departed_on < self.arrived_on:
            raise ValidationFailed("departed_on", "a talent cannot depart before arriving")
        self._departed(departed_on, reason)

    @event(Departed)
    def _departed(self, departed_on: date, reason: str) -> None:
        self.departed_on = departed_on
        self.departure_reason = reason

    class PersonalDataErased(LedgerAggregate.Event):
        pass

    def record_erasure(self) -> None:
        """Record that the talent's data key was destroyed; once is enough."""
        if not self.personal_data_erased:
            self._personal_data_erased()

    @event(PersonalDataErased)
    def _personal_data_erased(self) -> None:
        self.personal_data_erased = True
