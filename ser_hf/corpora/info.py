"""What ser-hf knows about each named corpus (licence, citation, language), for reports and model cards."""

from __future__ import annotations

from dataclasses import dataclass

#: Other spellings of corpus names, as `load_corpus` accepts them.
CORPUS_ALIASES: dict[str, str] = {"cremad": "crema-d", "emo-db": "emodb", "folder": "folders"}


def normalise_corpus_name(name: str) -> str:
    """``"CREMA_D"``, ``"cremad"`` → ``"crema-d"``; ``"EMO-DB"`` → ``"emodb"`` (other names lower-cased)."""
    key = str(name).strip().lower().replace("_", "-")
    return CORPUS_ALIASES.get(key, key)


@dataclass(frozen=True)
class CorpusInfo:
    """Facts about one corpus: its names, licence, how to cite it, its languages and what its speakers are."""

    name: str
    display_name: str
    license: str | None
    license_text: str
    citation: str
    language: tuple[str, ...]
    speaker_word: str


#: Registry name → what ser-hf knows about that corpus. ``license`` is a Hub licence id, or ``None``
#: where the corpus has none (``license_text`` then says on what terms it is distributed).
KNOWN_CORPORA: dict[str, CorpusInfo] = {
    info.name: info
    for info in (
        CorpusInfo(
            name="ravdess",
            display_name="RAVDESS",
            license="cc-by-nc-sa-4.0",
            license_text="CC BY-NC-SA 4.0: non-commercial use, with attribution, derivatives shared alike.",
            citation=(
                "Livingstone, S. R., & Russo, F. A. (2018). The Ryerson Audio-Visual Database of Emotional Speech "
                "and Song (RAVDESS): A dynamic, multimodal set of facial and vocal expressions in North American "
                "English. PLoS ONE 13(5): e0196391. https://doi.org/10.1371/journal.pone.0196391"
            ),
            language=("en",),
            speaker_word="actors",
        ),
        CorpusInfo(
            name="emovo",
            display_name="EMOVO",
            license=None,
            license_text="Research use only, citing Costantini et al. (LREC 2014); no open licence.",
            citation=(
                "Costantini, G., Iaderola, I., Paoloni, A., & Todisco, M. (2014). EMOVO Corpus: an Italian Emotional "
                "Speech Database. Proceedings of the Ninth International Conference on Language Resources and "
                "Evaluation (LREC 2014), 3501-3504."
            ),
            language=("it",),
            speaker_word="actors",
        ),
        CorpusInfo(
            name="crema-d",
            display_name="CREMA-D",
            license="odbl",
            license_text="Open Database License (ODbL) 1.0: use and adapt, with attribution, derivatives shared alike.",
            citation=(
                "Cao, H., Cooper, D. G., Keutmann, M. K., Gur, R. C., Nenkova, A., & Verma, R. (2014). CREMA-D: "
                "Crowd-sourced Emotional Multimodal Actors Dataset. IEEE Transactions on Affective Computing 5(4), "
                "377-390. https://doi.org/10.1109/TAFFC.2014.2336244"
            ),
            language=("en",),
            speaker_word="actors",
        ),
        CorpusInfo(
            name="tess",
            display_name="TESS",
            license="cc-by-nc-nd-4.0",
            license_text="CC BY-NC-ND 4.0: non-commercial use, with attribution, no derivatives.",
            citation=(
                "Dupuis, K., & Pichora-Fuller, M. K. (2010). Toronto emotional speech set (TESS). University of "
                "Toronto, Psychology Department. https://doi.org/10.5683/SP2/E8H2MF"
            ),
            language=("en",),
            speaker_word="speakers",
        ),
        CorpusInfo(
            name="savee",
            display_name="SAVEE",
            license=None,
            license_text="Free for research use, citing Haq & Jackson (2010); no open licence.",
            citation=(
                "Haq, S., & Jackson, P. J. B. (2010). Multimodal Emotion Recognition. In W. Wang (Ed.), Machine "
                "Audition: Principles, Algorithms and Systems (pp. 398-423). IGI Global."
            ),
            language=("en",),
            speaker_word="speakers",
        ),
        CorpusInfo(
            name="emodb",
            display_name="EmoDB",
            license=None,
            license_text="No explicit licence: distributed for research use, citing Burkhardt et al. (2005).",
            citation=(
                "Burkhardt, F., Paeschke, A., Rolfes, M., Sendlmeier, W. F., & Weiss, B. (2005). A database of German "
                "emotional speech. Proceedings of Interspeech 2005, 1517-1520."
            ),
            language=("de",),
            speaker_word="actors",
        ),
    )
}


def corpus_info(name: str) -> CorpusInfo | None:
    """What ser-hf knows about a corpus (any spelling `load_corpus` accepts), or ``None`` for another one."""
    return KNOWN_CORPORA.get(normalise_corpus_name(name))


def label_codes(name: str) -> dict[str, str]:
    """How a named corpus writes its emotions, mapped onto ser-hf's labels (e.g. EMOVO ``"gio"`` → ``"happy"``);
    empty for corpora whose files are labelled with the emotion's name."""
    from importlib import import_module

    from ..labels import RAVDESS_EMOTIONS

    name = normalise_corpus_name(name)
    if name == "ravdess":
        return {f"{i + 1:02d}": emotion for i, emotion in enumerate(RAVDESS_EMOTIONS)}
    module = {"emovo": "emovo", "crema-d": "crema_d", "savee": "savee", "emodb": "emodb"}.get(name)
    if module is None:
        return {}
    return dict(getattr(import_module(f"{__package__}.{module}"), "_EMOTIONS", {}))


def describe_corpora(names: list[str], labels: list[str]) -> list[dict[str, object]]:
    """For reports: each corpus' name, licence, citation and how its labels map onto ``labels``."""
    out: list[dict[str, object]] = []
    for name in names:
        info = corpus_info(name)
        codes = {code: label for code, label in label_codes(name).items() if label in labels}
        out.append(
            {
                "corpus": info.display_name if info else name,
                "license": (info.license or "none") if info else "unknown",
                "license_text": info.license_text if info else "not recorded: check it before sharing a model",
                "citation": info.citation if info else None,
                "labels": codes or {label: label for label in labels},
            }
        )
    return out
