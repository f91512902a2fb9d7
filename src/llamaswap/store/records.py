"""One finished request -> one activity row, in the writer thread.

All the parsing a row needs (token figures, the error text of a failed request)
happens here, off the event loop and off the request path.
"""

from __future__ import annotations

from llamaswap.runtime.events import RequestFinished

from .database import Row, metadata_json
from .tokens import error_message, figures_of


def row_of(row_id: int, event: RequestFinished) -> Row:
    """llama-swap's record(): figures from the body; the error text for a failed one;
    the duration is the longer of the wall clock and llama.cpp's own timings."""
    figures = figures_of(event.tail, event.content_type, event.path)
    duration_ms = max(int(event.duration * 1000), figures.timed_ms)
    error = error_message(event.status, event.tail) if event.status >= 400 else ""
    return (
        row_id,
        int(event.at),  # when it finished, as llama-swap records it
        event.model,
        event.path,
        event.content_type,
        event.status,
        figures.cached,
        figures.draft,
        figures.draft_accepted,
        figures.input,
        figures.output,
        figures.prompt_per_second,
        figures.tokens_per_second,
        duration_ms,
        error,
        metadata_json(sorted(event.metadata.items())),
        event.method,
        event.key_id,
    )
