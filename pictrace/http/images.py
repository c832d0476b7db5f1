"""The catalog resource: /images, /images/{id}, /images/{id}/similar, /images/{id}/matches, /uploads."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router

from pictrace.catalog import layout
from pictrace.catalog.search import search as run_search
from pictrace.catalog.sources import Failed, Skipped, Source, all_images, check_urls
from pictrace.core.features import ImageFeatures
from pictrace.core.filters import check_meta
from pictrace.core.scoring import matched_points
from pictrace.errors import BadRequest, BudgetExceeded, NotFound, PicTraceError
from pictrace.http.inputs import body, int_param, single_image
from pictrace.http.options import image_meta, min_score, search_filter
from pictrace.runtime import services

router = Router()


@router.post("/images")
def add_images() -> Response[dict]:
    s = services()
    parsed = body(router, s.config)
    fields = parsed.fields or {}
    meta = image_meta(router, fields)  # checked before anything is fetched or stored
    if parsed.image is None and ("url" in fields or "urls" in fields) and "s3_key" not in fields:
        urls = check_urls(fields["urls"] if "urls" in fields else [fields["url"]], s.config)
        sources = all_images(urls, s.config)
    else:
        one = single_image(parsed, s.catalog, s.config)
        sources = [Source(one.data, one.image_url, one.page_url)]
    added, failed, skipped = [], [], []
    for src in sources:
        if isinstance(src, Skipped):
            skipped.append(src.to_dict())
            continue
        if isinstance(src, Failed):
            failed.append(src.to_dict())
            continue
        try:
            result = s.catalog.add(
                src.data,
                name=parsed.filename or _name(fields) or src.name,
                image_url=src.image_url,
                page_url=src.page_url,
                meta=meta,
            )
        except PicTraceError as exc:
            if len(sources) == 1:
                raise  # a single bad image is the request's error
            failed.append({"url": src.image_url, **exc.to_dict()})
            continue
        added.append({**result.record.public(), **s.catalog.urls(result.record), "created": result.created})
    if not added:
        if len(sources) == 1 and isinstance(sources[0], Failed):
            raise sources[0].error  # one URL, one reason: answer with it directly
        if skipped and not failed:
            raise BudgetExceeded("the request's budget ran out before any image was taken", failed=failed, skipped=skipped)
        raise BadRequest("no image could be added", failed=failed, skipped=skipped)
    status = 201 if any(a["created"] for a in added) else 200
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body={"ids": [a["id"] for a in added], "images": added, "failed": failed, "skipped": skipped},
    )


def _name(fields: dict) -> str:
    name = fields.get("name", "")
    if not isinstance(name, str):
        raise BadRequest("name must be a string")
    return name


@router.get("/images")
def list_images() -> dict:
    s = services()
    limit = int_param(router, "limit", 50, 1, s.config.list_page_max)
    cursor = router.current_event.get_query_string_value("cursor", None) or None
    wanted = search_filter(router)
    page = s.catalog.page(limit, cursor, wanted)
    return {
        # Links are signed here, one page at a time, so the page never asks for them card by card.
        "images": [{**r.public(), **s.catalog.urls(r)} for r in page.records],
        "count": len(page.records),
        "total": page.total,
        "next_cursor": page.next_cursor,
        # Records that could not be read are skipped, not fatal; DELETE of an id repairs it.
        "damaged": page.damaged,
        "filter": wanted.to_dict(),
    }


@router.get("/images/<image_id>")
def get_image(image_id: str) -> dict:
    s = services()
    record = s.catalog.get(image_id)
    return {**record.public(), **s.catalog.urls(record)}


@router.patch("/images/<image_id>")
def patch_image(image_id: str) -> dict:
    """Replace an image's ``meta`` (JSON ``{"meta": {...}}``); searches filter by the new values at once."""
    s = services()
    parsed = body(router, s.config)
    fields = parsed.fields
    if fields is None or parsed.image is not None:
        raise BadRequest('PATCH /images/{id} takes a JSON body: {"meta": {...}}')
    if set(fields) != {"meta"}:
        other = sorted(set(fields) - {"meta"})
        raise BadRequest(f"only meta can be changed; got {', '.join(other) or 'no meta'}")
    record = s.catalog.set_meta(image_id, check_meta(fields["meta"]))
    return {**record.public(), **s.catalog.urls(record)}


@router.delete("/images/<image_id>")
def delete_image(image_id: str) -> dict:
    return {"deleted": services().catalog.delete(image_id)}


@router.get("/images/<image_id>/similar")
def similar_images(image_id: str) -> dict:
    """Search with a catalog image's stored original; the image itself is left out.

    The original's bytes, not its stored features, are the query, so it is
    stored as a query like any other and ``/matches`` can draw its results.
    """
    s = services()
    k = int_param(router, "k", s.config.default_k, 1, s.config.max_k)
    ranking = router.current_event.get_query_string_value("ranking", "default")
    mode = router.current_event.get_query_string_value("mode", "default")  # "similar": looks-like
    threshold = min_score(router)
    wanted = search_filter(router)
    record = s.catalog.get(image_id)
    data = s.store.get(record.key, max_bytes=s.config.max_image_bytes)
    result = run_search(
        s.catalog, s.invoker, data, k=k, ranking=ranking, mode=mode, exclude=[record.id], min_score=threshold,
        filter=wanted,
    )
    return {"image": {**record.public(), **s.catalog.urls(record)}, **result}


@router.get("/images/<image_id>/matches")
def image_matches(image_id: str) -> dict:
    """Matched ORB keypoints between a past query and a catalog image, for drawing."""
    s = services()
    query_id = router.current_event.get_query_string_value("query", "") or ""
    if not layout.is_image_id(query_id):
        raise BadRequest("query must be the sha256 of a previous search's query")
    record = s.catalog.get(image_id)
    try:
        query = ImageFeatures.from_bytes(s.store.get(layout.query_features_key(query_id)))
    except NotFound:
        raise NotFound(f"no stored query {query_id}") from None
    pairs, mirrored = matched_points(query, s.catalog.features(image_id))
    return {
        "query": {"sha256": query_id, "stored_url": s.store.presign_get(layout.query_key(query_id), s.config.presign_ttl)},
        "image": {"id": record.id, "stored_url": s.catalog.image_url(record)},
        "mirrored": mirrored,
        "pairs": pairs,
    }


@router.post("/uploads")
def create_upload() -> Response[dict]:
    s = services()
    fields = body(router, s.config).fields or {}
    ctype = fields.get("content_type", "image/jpeg")
    if not isinstance(ctype, str):
        raise BadRequest("content_type must be a string")
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=s.catalog.create_upload(ctype))
