"""The official `openai` and `anthropic` SDKs against llamaswap over real HTTP: models,
chat (plain, streaming, through a loading-state stream), embeddings, error mapping, and
/v1/messages. No proxy from the environment, no retries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anthropic
import anyio
import httpx2
import openai
import pytest

from .helpers import free_port
from .http_helpers import CHAT, chat, watching
from .server import RunningServer, config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio

KEY = "sk-good"


@asynccontextmanager
async def openai_client(
    server: RunningServer, api_key: str = KEY
) -> AsyncIterator[openai.AsyncOpenAI]:
    async with httpx2.AsyncClient(trust_env=False, timeout=30) as http:
        yield openai.AsyncOpenAI(
            base_url=server.url + "/v1", api_key=api_key, http_client=http, max_retries=0
        )


@asynccontextmanager
async def anthropic_client(
    server: RunningServer, api_key: str = KEY
) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with httpx2.AsyncClient(trust_env=False, timeout=30) as http:
        yield anthropic.AsyncAnthropic(
            base_url=server.url, api_key=api_key, http_client=http, max_retries=0
        )


async def test_openai_and_anthropic_sdks() -> None:
    yaml = config_yaml(
        fake_model(
            "a",
            "--respond",
            "pong",
            "--chunks",
            "4",
            "--startup-delay",
            "0.3",
            extra="aliases: [a-alias]\nsendLoadingState: true\nconcurrencyLimit: 1\nname: Model A",
        ),
        top=f"""
        apiKeys: [{KEY}]
        includeAliasesInList: true
        peers:
          gone:
            proxy: http://127.0.0.1:{free_port()}
            models: [x]
        """,
    )
    async with running_server(yaml) as server, openai_client(server) as client:
        # streaming chat; the first one waits for the model and gets the loading stream
        # first, which the SDK must parse like any other chunk
        stream = await client.chat.completions.create(
            model="a", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        content, thinking = "", ""
        async for chunk in stream:
            for choice in chunk.choices:
                content += choice.delta.content or ""
                thinking += (choice.delta.model_extra or {}).get("reasoning_content") or ""
        assert content == "pong" * 4
        assert "loading model: a" in thinking

        models = await client.models.list()
        ids = [model.id for model in models.data]
        assert ids == ["a", "a-alias", "gone/x"]
        assert all(model.object == "model" and model.owned_by for model in models.data)

        completion = await client.chat.completions.create(
            model="a-alias", messages=[{"role": "user", "content": "hi"}]
        )
        assert completion.choices[0].message.content == "pong"
        assert completion.usage is not None and completion.usage.prompt_tokens > 0

        stream = await client.chat.completions.create(
            model="a",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "pong" * 4
        assert chunks[-1].usage is not None

        embedding = await client.embeddings.create(model="a", input=["one", "two"])
        assert len(embedding.data) == 2 and len(embedding.data[0].embedding) > 0

        # multipart as the SDK encodes it: the model comes from the form field
        transcript = await client.audio.transcriptions.create(
            model="a-alias", file=("clip.wav", b"x" * 321, "audio/wav")
        )
        assert transcript.text == "The length of the file is 321 bytes"

        # error mapping
        with pytest.raises(openai.NotFoundError) as not_found:
            await client.chat.completions.create(
                model="nope", messages=[{"role": "user", "content": "hi"}]
            )
        assert "nope" in not_found.value.message
        with pytest.raises(openai.NotFoundError) as no_model:  # llama-swap's 404
            await client.chat.completions.create(
                model="", messages=[{"role": "user", "content": "hi"}]
            )
        assert "no model id could be identified" in no_model.value.message
        with pytest.raises(openai.InternalServerError) as unreachable:
            await client.chat.completions.create(
                model="gone/x", messages=[{"role": "user", "content": "hi"}]
            )
        assert unreachable.value.status_code == 502
        async with openai_client(server, api_key="sk-bad") as bad:
            with pytest.raises(openai.AuthenticationError):
                await bad.models.list()
            with pytest.raises(openai.AuthenticationError):
                await bad.chat.completions.create(
                    model="a", messages=[{"role": "user", "content": "hi"}]
                )
        async with (
            server.client() as http,
            watching(server) as watch,
            anyio.create_task_group() as tg,
        ):

            async def slow() -> None:
                headers = {"Authorization": f"Bearer {KEY}"}
                async with http.post(
                    server.url + CHAT + "?wait=1", json=chat("a"), headers=headers
                ) as r:
                    assert r.status == 200

            tg.start_soon(slow)
            await watch.until(lambda: server.service.router.snapshot.in_flight.get("a") == 1)
            with pytest.raises(openai.RateLimitError) as limited:
                await client.chat.completions.create(
                    model="a", messages=[{"role": "user", "content": "hi"}]
                )
            assert limited.value.response.headers.get("retry-after") == "1"
            with pytest.raises(openai.RateLimitError):
                await client.chat.completions.create(
                    model="a", messages=[{"role": "user", "content": "hi"}], stream=True
                )

        # the anthropic SDK on /v1/messages (it authenticates with x-api-key)
        async with anthropic_client(server) as claude:
            message = await claude.messages.create(
                model="a", max_tokens=16, messages=[{"role": "user", "content": "hello"}]
            )
            assert message.content[0].type == "text" and message.content[0].text == "pong"
            assert message.usage.input_tokens > 0
            async with claude.messages.stream(
                model="a-alias", max_tokens=16, messages=[{"role": "user", "content": "hello"}]
            ) as events:
                text = "".join([piece async for piece in events.text_stream])
                final = await events.get_final_message()
            assert text == "pong" * 4
            assert final.stop_reason == "end_turn"
            counted = await claude.messages.count_tokens(
                model="a", messages=[{"role": "user", "content": "hello there"}]
            )
            assert counted.input_tokens > 0
            with pytest.raises(anthropic.NotFoundError):
                await claude.messages.create(
                    model="nope", max_tokens=16, messages=[{"role": "user", "content": "x"}]
                )
        async with anthropic_client(server, api_key="sk-bad") as claude:
            with pytest.raises(anthropic.AuthenticationError):
                await claude.messages.create(
                    model="a", max_tokens=16, messages=[{"role": "user", "content": "x"}]
                )
