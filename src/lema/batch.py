"""OpenAI Batch API mode for the LLM corrector: one batch per attempt round.

The batch ids and the cache keys they carry are stored next to the response
cache, so a run that stops (or is killed) while a batch is in flight picks the
same batch up on the next run instead of paying for a new one.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

STATE = "batches.json"


class BatchClient:
    def __init__(self, client, cache_root: Path, endpoint: str, poll_s: float, wait_s: float):
        self.client = client
        self.state_file = cache_root / STATE
        self.endpoint = endpoint
        self.poll_s = poll_s
        self.wait_s = wait_s

    def _state(self) -> dict:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def _save(self, state: dict) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_file)

    def submit_or_resume(self, bodies: dict[str, dict]) -> str:
        """Batch id covering these cache keys: an open one from an earlier run, else a new one."""
        state = self._state()
        for batch_id, info in state.items():
            if info["status"] not in ("failed", "expired", "cancelled", "collected") and set(bodies) <= set(info["keys"]):
                return batch_id
        lines = [json.dumps({"custom_id": k, "method": "POST", "url": self.endpoint, "body": b}) for k, b in bodies.items()]
        upload = self.client.files.create(file=("lema-corrections.jsonl", io.BytesIO("\n".join(lines).encode())),
                                          purpose="batch")
        batch = self.client.batches.create(input_file_id=upload.id, endpoint=self.endpoint, completion_window="24h",
                                           metadata={"tool": "lema"})
        state[batch.id] = {"keys": sorted(bodies), "status": batch.status, "created": time.time()}
        self._save(state)
        return batch.id

    def wait(self, batch_id: str) -> dict[str, dict] | None:
        """{cache key: response body} once the batch completes; None if it is still running after wait_s."""
        deadline = time.time() + self.wait_s
        while True:
            batch = self.client.batches.retrieve(batch_id)
            state = self._state()
            state[batch_id]["status"] = batch.status
            self._save(state)
            if batch.status == "completed":
                break
            if batch.status in ("failed", "expired", "cancelled"):
                raise RuntimeError(f"batch {batch_id} ended {batch.status}")
            if time.time() >= deadline:
                return None
            time.sleep(self.poll_s)
        results: dict[str, dict] = {}
        if batch.output_file_id:
            text = self.client.files.content(batch.output_file_id).text
            for line in text.splitlines():
                if line.strip():
                    row = json.loads(line)
                    resp = row.get("response") or {}
                    if resp.get("status_code") == 200:
                        results[row["custom_id"]] = resp["body"]
        return results

    def mark_collected(self, batch_id: str) -> None:
        state = self._state()
        state[batch_id]["status"] = "collected"
        self._save(state)
