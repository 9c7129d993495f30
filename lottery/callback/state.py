"""The checkpointed run state of the callback: where the run is, what it rewinds to, and its tickets so far."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from lottery.callback.snapshot import Snapshot
from lottery.ticket import Ticket

STATE_VERSION = 1  # of the checkpointed state; a checkpoint of another version is refused


@dataclass
class RunState:
    """The round being trained, the step it started at, its rewind values, and the seed and label of the run."""

    round: int = 0
    round_start_step: int = 0
    snapshot: Snapshot | None = None  # what later rounds rewind to
    round_weights: dict[str, Tensor] | None = None  # rewind="none": weights the round started from
    finished: bool = False
    base_seed: int | None = None
    label: str = ""  # the pruner (or given ticket) named in every ticket
    run_id: str | None = None  # claims the results folder; kept across resumes (None: a checkpoint from before ids)

    def ticket_weights(self) -> dict[str, Tensor]:
        """The values the current round's ticket starts from."""
        if self.round_weights is not None:
            return self.round_weights
        return self.snapshot.model if self.snapshot is not None else {}

    def state(self) -> dict[str, Any]:
        """Checkpoint values (plain tensors and containers, loadable with weights_only)."""
        return {
            "version": STATE_VERSION, "round": self.round, "round_start_step": self.round_start_step,
            "snapshot": None if self.snapshot is None else self.snapshot.state(), "round_weights": self.round_weights,
            "finished": self.finished, "base_seed": self.base_seed, "label": self.label, "run_id": self.run_id,
        }

    def load(self, state: dict[str, Any]) -> None:
        """Inverse of `state`; refuses a checkpoint written with another state version."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"this checkpoint holds LotteryTicket state version {state.get('version')!r}; this lottery "
                             f"reads version {STATE_VERSION}. Resume it with the lottery version that wrote it.")
        self.round, self.round_start_step = state["round"], state["round_start_step"]
        self.snapshot = Snapshot.from_state(state["snapshot"])
        self.round_weights = state["round_weights"]
        self.finished, self.base_seed = state["finished"], state["base_seed"]
        self.label = state.get("label", self.label)
        self.run_id = state.get("run_id")

    def identify(self) -> str:
        """This run's id: the checkpointed one when resumed, else a new one."""
        if self.run_id is None:
            self.run_id = uuid.uuid4().hex
        return self.run_id


def pack_tickets(tickets: list[Ticket], with_weights: bool) -> list[dict[str, Any]]:
    """Tickets as checkpoint values; without their weights when every one rewinds to the shared snapshot."""
    out = []
    for t in tickets:
        tensors, header = t.pack(with_weights=with_weights)
        out.append({"tensors": tensors, "header": header})
    return out


def unpack_tickets(entries: list[dict[str, Any]], shared: dict[str, Tensor] | None) -> list[Ticket]:
    """Inverse of `pack_tickets`; `shared` (the snapshot's weights) is given to tickets stored without theirs."""
    tickets = []
    for entry in entries:
        ticket = Ticket.unpack(entry["tensors"], entry["header"])
        if shared is not None:
            ticket.weights = shared
        tickets.append(ticket)
    return tickets
