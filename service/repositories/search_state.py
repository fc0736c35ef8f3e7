"""An adaptive sweep's decisions (sweeps.search_state), read and written by the worker that trains it."""

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.models import Sweep


def lock_search_state(session: Session, sweep_id: str) -> dict:
    """The decisions so far, the sweep's row locked (PostgreSQL) until the transaction ends."""
    state = session.scalar(select(Sweep.search_state).where(Sweep.id == sweep_id).with_for_update())
    return dict(state or {})


def get_search_state(session: Session, sweep_id: str) -> dict:
    return dict(session.scalar(select(Sweep.search_state).where(Sweep.id == sweep_id)) or {})


def set_search_state(session: Session, sweep_id: str, state: dict) -> None:
    session.execute(update(Sweep).where(Sweep.id == sweep_id).values(search_state=state))
