"""Grounded sub-answers: a local BM25 retriever (bm25s) over your own documents, and how passages reach a step.

Any LangChain `BaseRetriever` plugs into `Orchestrator(retriever=...)`; each model-answered step retrieves for its
resolved sub-question and records the passages' ids and scores as its sources. `LocalDocsRetriever` is the
built-in one (`decompose run --docs PATH`): a folder of .txt/.md files (split into paragraphs) or a JSONL file of
`{"id": ..., "text": ...}` objects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, PrivateAttr

from decompose.errors import ConfigError, DecomposeError

TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".rst")
PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
MAX_PASSAGE_CHARS = 1500


class LocalDocsRetriever(BaseRetriever):
    """BM25 (bm25s) over passages held in memory. `k` passages per query; passages that share no word with
    the query are never returned."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    documents: list[Document]
    k: int = 3
    _index: Any = PrivateAttr(default=None)

    def model_post_init(self, __context: Any) -> None:
        import bm25s

        if not self.documents:
            raise ConfigError("the retriever has no documents", hint="give at least one text passage")
        if self.k < 1:
            raise ConfigError(f"k must be at least 1, got {self.k}")
        self._index = bm25s.BM25()
        self._index.index(_tokenize([d.page_content for d in self.documents]), show_progress=False)

    @classmethod
    def from_texts(cls, texts: Iterable[tuple[str, str] | dict[str, Any]], **kwargs: Any) -> LocalDocsRetriever:
        """From (id, text) pairs or {"id", "text"} objects."""
        documents = []
        for item in texts:
            doc_id, text = (item["id"], item["text"]) if isinstance(item, dict) else item
            documents.append(Document(page_content=str(text), metadata={"id": str(doc_id)}))
        return cls(documents=documents, **kwargs)

    @classmethod
    def from_path(cls, path: str | Path, **kwargs: Any) -> LocalDocsRetriever:
        """A folder of text/markdown files (each paragraph a passage, id `file#n`) or a JSONL file."""
        return cls(documents=load_documents(path), **kwargs)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        words = query_terms(query)
        if not words:
            return []
        k = min(self.k, len(self.documents))
        indices, scores = self._index.retrieve([words], k=k, show_progress=False, n_threads=1)
        found = []
        for index, score in zip(indices[0], scores[0]):
            if score <= 0:
                continue
            doc = self.documents[int(index)]
            found.append(
                Document(page_content=doc.page_content, metadata={**doc.metadata, "score": round(float(score), 4)})
            )
        return found


def query_terms(text: str) -> list[str]:
    """The words BM25 matches on: lower-cased, English stop words dropped, plurals folded."""
    return _tokenize([text], return_ids=False)[0]


def _tokenize(texts: list[str], return_ids: bool = True) -> Any:
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", stemmer=_fold_plurals, return_ids=return_ids, show_progress=False)


def _fold_plurals(words: list[str]) -> list[str]:
    """A crude stemmer ("refunds" → "refund", "cities" → "city"): enough to match a plural to its singular,
    without a stemming dependency."""
    out = []
    for w in words:
        if len(w) > 4 and w.endswith("ies"):
            w = w[:-3] + "y"
        elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
            w = w[:-1]
        out.append(w)
    return out


def load_documents(path: str | Path) -> list[Document]:
    source = Path(path).expanduser()
    if source.is_dir():
        documents = []
        for file in sorted(p for p in source.rglob("*") if p.suffix.lower() in TEXT_SUFFIXES and p.is_file()):
            name = file.relative_to(source).as_posix()
            paragraphs = [p.strip() for p in PARAGRAPH_BREAK.split(_read(file)) if p.strip()]
            for n, passage in enumerate(_bounded(paragraphs), 1):
                documents.append(Document(page_content=passage, metadata={"id": f"{name}#{n}", "source": name}))
        if not documents:
            raise ConfigError(
                f"--docs {path}: no text found in .txt/.md files there",
                hint="point at a folder of text or markdown files, or at a JSONL file",
            )
        return documents
    if source.is_file():
        return (
            _jsonl_documents(source)
            if source.suffix.lower() in (".jsonl", ".json")
            else [
                Document(page_content=p, metadata={"id": f"{source.name}#{n}", "source": source.name})
                for n, p in enumerate(_bounded(PARAGRAPH_BREAK.split(_read(source))), 1)
                if p.strip()
            ]
        )
    raise ConfigError(f"--docs {path}: no such file or folder", hint="check the path")


def _jsonl_documents(file: Path) -> list[Document]:
    documents = []
    for number, line in enumerate(_read(file).splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{file}:{number}: not valid JSON ({exc.msg})",
                hint='write one {"id": ..., "text": ...} object per line',
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("text"), str) or not data["text"].strip():
            raise ConfigError(
                f'{file}:{number}: expected an object with a "text" string',
                hint='write one {"id": ..., "text": ...} object per line',
            )
        documents.append(
            Document(page_content=data["text"].strip(), metadata={"id": str(data.get("id", f"{file.name}#{number}"))})
        )
    if not documents:
        raise ConfigError(f"{file} has no documents", hint='write one {"id": ..., "text": ...} object per line')
    return documents


def _bounded(paragraphs: list[str]) -> list[str]:
    """Paragraphs longer than MAX_PASSAGE_CHARS cut into pieces, so one passage never floods a prompt."""
    out = []
    for p in paragraphs:
        p = p.strip()
        out += [p[i : i + MAX_PASSAGE_CHARS] for i in range(0, len(p), MAX_PASSAGE_CHARS)] if p else []
    return out


def _read(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {file}: {exc}", hint="documents must be UTF-8 text files") from None


def sources_of(documents: list[Document]) -> list[dict[str, Any]]:
    """What a step records of its passages: id and score (when the retriever gives one)."""
    return [{"id": str(d.metadata.get("id", d.id or "?")), "score": d.metadata.get("score")} for d in documents]


def passages_text(documents: list[Document]) -> str:
    if not documents:
        return ""
    lines = [f"[{d.metadata.get('id', d.id or n)}] {d.page_content}" for n, d in enumerate(documents, 1)]
    return "Passages:\n" + "\n".join(lines) + "\n\n"


async def search(retriever: BaseRetriever | None, query: str, purpose: str) -> list[Document]:
    """Passages for `query` (none without a retriever); a retriever that fails is a clear error naming `purpose`."""
    if retriever is None:
        return []
    try:
        return await retriever.ainvoke(query)
    except Exception as exc:  # a user's retriever: any failure becomes a clear error
        raise DecomposeError(
            f"the retriever failed for {purpose}: {type(exc).__name__}: {exc}",
            hint="check the retriever (its index, its server)",
        ) from exc
