r"""
Text classification data with disjoint owner / attacker / test splits, as [`~hf_ingrain.data.load_image_dataset`]
gives for images: columns `text` (raw strings, tokenized by the model's tokenizer) and `labels`.

The offline default, `"emoji-names"`, is a real labelled corpus that a pip package ships: the names of the 5,244
Unicode emoji in the CLDR translations that the `emoji` package carries (`emoji/unicode_codes/emoji_xx.json`), one
example per emoji and language, the language its label. The default languages all use the Latin script (English,
German, Spanish, French, Indonesian, Italian, Portuguese, Turkish), so the script alone does not tell them apart;
many names are shared between languages ("taxi", "kiwi"), so the task is not trivially separable either. The splits
are made by emoji: the translations of one emoji never fall in two splits. Any other name goes to
`datasets.load_dataset` (online), with its `text` / `sentence` and `label` columns.
"""

import json
import os

import numpy as np

from ..extras import require
from .preparation import LABEL_COLUMNS, TEXT_COLUMNS

EMBEDDED_TEXT_DATASET = "emoji-names"
LATIN_LANGUAGES = ("en", "de", "es", "fr", "id", "it", "pt", "tr")


def _emoji_names(languages) -> tuple[list[list[str]], list[str]]:
    """Per emoji, its name in each of `languages` (`None` where a translation is missing)."""
    emoji = require("emoji", f"The embedded text corpus {EMBEDDED_TEXT_DATASET!r}")
    folder = os.path.join(os.path.dirname(emoji.__file__), "unicode_codes")
    tables = {}
    for language in languages:
        path = os.path.join(folder, "emoji.json" if language == "en" else f"emoji_{language}.json")
        if not os.path.isfile(path):
            raise ValueError(f"The `emoji` package has no names in {language!r}.")
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
        tables[language] = {k: (v["en"] if isinstance(v, dict) else v) for k, v in table.items()}
    emojis = sorted(tables[languages[0]])
    names = [[tables[lang].get(e) for lang in languages] for e in emojis]
    return names, list(languages)


def _clean(name: str) -> str:
    return name.strip(":").replace("_", " ")


def load_text_dataset(
    name_or_path: str | None = None,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.4, 0.4, 0.2),
    languages: tuple[str, ...] = LATIN_LANGUAGES,
):
    r"""
    Loads a text classification data set as a `DatasetDict` with disjoint `owner`, `attacker` and `test` splits.

    Args:
        name_or_path (`str`, *optional*, defaults to `"emoji-names"`):
            `"emoji-names"` (offline: emoji names in `languages`, labelled by language) or a name or folder for
            `datasets.load_dataset` with a text and a label column.
        seed (`int`, *optional*, defaults to 0): seed of the split assignment.
        fractions (`tuple[float, float, float]`, *optional*, defaults to `(0.4, 0.4, 0.2)`):
            Shares of owner, attacker and test data (by emoji for the embedded corpus).
        languages (`tuple[str, ...]`, *optional*): the embedded corpus's classes (at least 3).

    Returns:
        `datasets.DatasetDict`: splits `owner`, `attacker`, `test`, each with `text` and `labels`.

    Example:

    ```python
    >>> from hf_ingrain.data import load_text_dataset
    >>> splits = load_text_dataset()
    >>> splits["owner"].features["labels"].names[:3]
    ['en', 'de', 'es']
    ```
    """
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    from .images import split_indices

    name_or_path = name_or_path or EMBEDDED_TEXT_DATASET
    if name_or_path != EMBEDDED_TEXT_DATASET:
        return _load_external_text(name_or_path, seed, fractions)
    if len(languages) < 3:
        raise ValueError(f"Give at least 3 languages (the test compares runner-up classes), got {languages}.")
    names, labels = _emoji_names(tuple(languages))
    features = Features({"text": Value("string"), "labels": ClassLabel(names=labels)})
    splits = {}
    for split, index in zip(("owner", "attacker", "test"), split_indices(len(names), fractions, seed)):
        seen, texts, targets = set(), [], []
        for row in np.asarray(index).tolist():
            for label, name in enumerate(names[row]):
                if name is not None and (name, label) not in seen:
                    seen.add((name, label))
                    texts.append(_clean(name))
                    targets.append(label)
        splits[split] = Dataset.from_dict({"text": texts, "labels": targets}, features=features)
    return DatasetDict(splits)


def _load_external_text(name_or_path, seed, fractions):
    from datasets import DatasetDict, load_dataset

    from .images import split_indices

    loaded = load_dataset(name_or_path)
    columns = next(iter(loaded.values())).column_names
    text = next((c for c in TEXT_COLUMNS if c in columns), None)
    label = next((c for c in LABEL_COLUMNS if c in columns), None)
    if text is None or label is None:
        raise ValueError(f"{name_or_path!r} has the columns {columns}; a text and a label column are needed.")
    loaded = loaded.rename_columns({k: v for k, v in ((text, "text"), (label, "labels")) if k != v})
    loaded = loaded.select_columns(["text", "labels"])
    if "test" in loaded and len(loaded) > 1:
        train = loaded["train" if "train" in loaded else next(s for s in loaded if s != "test")]
        share = fractions[0] / max(fractions[0] + fractions[1], 1e-12)
        owner, attacker = split_indices(len(train), (share, 1 - share), seed)
        return DatasetDict({"owner": train.select(owner), "attacker": train.select(attacker), "test": loaded["test"]})
    data = next(iter(loaded.values()))
    parts = split_indices(len(data), fractions, seed)
    return DatasetDict({split: data.select(index) for split, index in zip(("owner", "attacker", "test"), parts)})


def wordpiece_tokenizer(texts, vocab_size: int = 8000, model_max_length: int = 64):
    r"""
    A BERT tokenizer (WordPiece, lower-cased, `[CLS] ... [SEP]`, `[PAD]` = 0) built from `texts`, for a model built
    from config where no pretrained tokenizer can be downloaded (nothing comes from the Hub).

    The vocabulary is a function of `texts` alone, so the same texts give the same token ids in every process: the
    special tokens, every character seen (word-initial, then `##` word-internal; most frequent first, ties in
    character order), then whole words, most frequent first and ties in alphabetical order, up to `vocab_size`. A word
    outside it is split into its characters by WordPiece's longest match. `tokenizers`' own `WordPieceTrainer` is not
    used: it breaks ties between equally frequent pairs in a hash map's order, which changes from process to process
    (measured: two trainings on the same 23,000 tweets gave 12 different tokens and 472 different ids of 8,000), so a
    script that rebuilt its tokenizer on a resumed run fed a saved key's ingrainer other token ids than it was
    trained on.

    Args:
        texts (iterable of `str`): the training texts (e.g. the owner's split).
        vocab_size (`int`, *optional*, defaults to 8000): the most tokens, special tokens included.
        model_max_length (`int`, *optional*, defaults to 64): the length `truncation=True` cuts to.

    Returns:
        `transformers.PreTrainedTokenizerFast`: save it with the model (`processing_class=` or `save_pretrained`).

    Example:

    ```python
    >>> from hf_ingrain.data import load_text_dataset
    >>> from hf_ingrain.data.text import wordpiece_tokenizer
    >>> tokenizer = wordpiece_tokenizer(load_text_dataset()["owner"]["text"], vocab_size=2000)
    >>> tokenizer("a cat")["input_ids"][0] == tokenizer.cls_token_id
    True
    ```
    """
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    if vocab_size <= len(specials):
        raise ValueError(f"`vocab_size` must exceed the {len(specials)} special tokens, got {vocab_size}.")
    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = Counter(word for text in texts
                    for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    initial, internal = Counter(), Counter()
    for word, count in words.items():
        initial[word[0]] += count
        for character in word[1:]:
            internal["##" + character] += count
    vocabulary = dict.fromkeys(specials)  # ordered
    for counts in (initial, internal, words):  # most frequent first, ties in order; a word already in stays once
        for token, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
            if len(vocabulary) >= vocab_size:
                break
            vocabulary.setdefault(token)
    tokenizer = Tokenizer(models.WordPiece({token: index for index, token in enumerate(vocabulary)},
                                           unk_token="[UNK]"))
    tokenizer.normalizer, tokenizer.pre_tokenizer, tokenizer.decoder = normalizer, pre_tokenizer, decoders.WordPiece()
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=model_max_length,
    )
