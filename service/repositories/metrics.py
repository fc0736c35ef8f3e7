"""Queries on curve points and weights."""

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.models import JobWeights, MetricPoint


def count_points(session: Session, job_id: str, since_step: int) -> int:
    query = select(func.count()).where(MetricPoint.job_id == job_id, MetricPoint.step > since_step)
    return session.scalar(query) or 0


def list_points(session: Session, job_id: str, since_step: int, max_points: int) -> list[MetricPoint]:
    """Points after `since_step` in step order; at most `max_points`, evenly spaced, the first and last kept."""
    query = select(MetricPoint).where(MetricPoint.job_id == job_id, MetricPoint.step > since_step)
    points = list(session.scalars(query.order_by(MetricPoint.step)))
    if len(points) <= max_points:
        return points
    if max_points == 1:
        return points[-1:]
    last = len(points) - 1
    return [points[round(i * last / (max_points - 1))] for i in range(max_points)]


def get_weights(session: Session, job_id: str) -> bytes | None:
    return session.scalar(select(JobWeights.data).where(JobWeights.job_id == job_id))


def list_points_after(session: Session, job_id: str, since_step: int, limit: int) -> list[MetricPoint]:
    """The next `limit` points after `since_step`, in step order, none skipped (for streams that must see each)."""
    query = select(MetricPoint).where(MetricPoint.job_id == job_id, MetricPoint.step > since_step)
    return list(session.scalars(query.order_by(MetricPoint.step).limit(limit)))
