"""GET /v1/jobs/{id}/model.onnx: a succeeded job's network for other runtimes."""

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from service.api.deps import ERROR_RESPONSES, ModelCacheDep, OwnerDep, SettingsDep

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)


@router.get("/{job_id}/model.onnx", response_class=Response, responses={200: {"content": {"application/onnx": {}}}})
async def get_onnx(job_id: str, owner: OwnerDep, cache: ModelCacheDep, settings: SettingsDep):
    from service.services.exports import export_onnx  # torch and onnx load at the first export, not at start-up

    blob = await run_in_threadpool(export_onnx, cache, job_id, owner, settings.MAX_RESPONSE_BYTES)
    headers = {"Content-Disposition": f'attachment; filename="{job_id}.onnx"'}
    return Response(blob, media_type="application/onnx", headers=headers)
