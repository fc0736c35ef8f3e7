"""Queries on curve points and weights. Points are stored in chunks (service/curves.py)."""

from collections.abc import Iterator, Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from service import curves
from service.curves import CurvePoint
from service.models import JobWeights, MetricChunk

CHUNKS = MetricChunk.__table__


def insert_points(session: Session, entries: Sequence[tuple[str, curves.Columns]]) -> None:
    """Store each (job id, points) as one chunk, in one statement."""
    rows = []
    for job_id, points in entries:
        if points:
            chunk = curves.encode(points)
            rows.append({"job_id": job_id, **{name: getattr(chunk, name) for name in curves.Chunk.__slots__}})
    if rows:
        session.connection().execute(CHUNKS.insert(), rows)


def _chunks_after(session: Session, job_id: str, since_step: int) -> Iterator[MetricChunk]:
    query = select(MetricChunk).where(MetricChunk.job_id == job_id, MetricChunk.last_step > since_step)
    return iter(session.scalars(query.order_by(MetricChunk.first_step)))


def count_points(session: Session, job_id: str, since_step: int) -> int:
    whole = select(func.sum(MetricChunk.count)).where(MetricChunk.job_id == job_id, MetricChunk.first_step > since_step)
    total = session.scalar(whole) or 0
    straddling = session.scalar(
        select(MetricChunk).where(
            MetricChunk.job_id == job_id, MetricChunk.first_step <= since_step, MetricChunk.last_step > since_step
        )
    )
    if straddling is not None:
        cols = curves.columns(straddling.columns, straddling.data, straddling.count)
        total += len(curves.after(cols, since_step)["step"])
    return total


def list_points(session: Session, job_id: str, since_step: int, max_points: int) -> list[CurvePoint]:
    """Points after `since_step` in step order; at most `max_points`, evenly spaced, the first and last kept.

    Chosen on the columns: only the points returned become objects.
    """
    chunks = [(c.columns, c.data, c.count) for c in _chunks_after(session, job_id, since_step)]
    cols = curves.joined(chunks, since_step)
    n = len(cols["step"])
    if n > max_points:
        last = n - 1
        chosen = [last] if max_points == 1 else [round(i * last / (max_points - 1)) for i in range(max_points)]
        cols = {name: values[chosen] for name, values in cols.items()}
    return curves.to_points(cols)


def list_points_after(session: Session, job_id: str, since_step: int, limit: int) -> list[CurvePoint]:
    """The next `limit` points after `since_step`, in step order, none skipped (for streams that must see each)."""
    points: list[CurvePoint] = []
    for c in _chunks_after(session, job_id, since_step):
        points += curves.decode(c.columns, c.data, c.count, since_step)
        if len(points) >= limit:
            break
    return points[:limit]


def truncate_points(session: Session, job_id: str, after_step: int) -> None:
    """Drop points past `after_step` (a checkpoint), so a resumed attempt rewrites them without duplicates."""
    truncate_points_many(session, [job_id], after_step)


def truncate_points_many(session: Session, job_ids: list[str], after_step: int) -> None:
    """`truncate_points` for the jobs that resume from one step together (a sweep's members)."""
    # Core on the connection: a worker trims its members' curves at each start, under SQLite's write lock
    connection, chunks = session.connection(), CHUNKS.c
    connection.execute(delete(CHUNKS).where(chunks.job_id.in_(job_ids), chunks.first_step > after_step))
    # what is left past the step is the end of chunks that began before it: at most one a job
    straddling = connection.execute(
        select(chunks.job_id, chunks.first_step, chunks.columns, chunks.data, chunks.count)
        .where(chunks.job_id.in_(job_ids), chunks.last_step > after_step)
    ).all()
    for job_id, first_step, columns, data, count in straddling:
        kept = curves.trimmed(columns, data, count, after_step)
        connection.execute(
            update(CHUNKS)
            .where(chunks.job_id == job_id, chunks.first_step == first_step)
            .values(last_step=kept.last_step, count=kept.count, columns=kept.columns, data=kept.data)
        )


def get_weights(session: Session, job_id: str) -> bytes | None:
    return session.scalar(select(JobWeights.data).where(JobWeights.job_id == job_id))
