"""A testing kit for bots built on chipi-session (install ``chipi-session[testing]``).

* pytest fixtures (:mod:`.fixtures`, registered by the :mod:`.plugin` entry point),
* a LocalChain world on a manual clock and deterministic time travel (:mod:`.world`),
* hypothesis strategies (:mod:`.strategies`),
* :class:`SessionLifecycleMachine`, a hypothesis state machine to extend with a bot's own rules
  and invariants (:mod:`.machine`).

Signing shortcuts for raw LocalChain transactions live in :mod:`chipi_session.localchain.testing`,
the fault-injecting backend in :mod:`chipi_session.backends.faults`. See docs/testing.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports
from .world import DEFAULT_PIN, DEFAULT_START, ChainWorld, make_world, settle, travel

__all__ = [
    "ChainWorld",
    "make_world",
    "settle",
    "travel",
    "DEFAULT_PIN",
    "DEFAULT_START",
    "SessionLifecycleMachine",
]

if TYPE_CHECKING:  # pragma: no cover
    from .machine import SessionLifecycleMachine


# the machine needs hypothesis (the 'testing' extra); import it only when asked for
__getattr__, __dir__ = lazy_exports(
    __name__, {"SessionLifecycleMachine": "machine"}, {"SessionLifecycleMachine": "testing"}
)
