"""A synthetic two-language world, tiny Llama models trained in it, and a greedy evaluation.

Languages A and B share one structure (the same items, tasks and sentence forms) but no surface token:
item 7 is `a07` in A and `b07` in B, "reverse" is `ar` in A and `br` in B. Plain text states tasks
("ar a03 a07 ai a07 a03 a."); chat data asks them in a chat template and answers in the same language.
"""
import random
from dataclasses import dataclass
from pathlib import Path

import torch

ITEMS = 24
TASKS = ("copy", "reverse", "last", "count", "sort")
SPECIAL = ["<pad>", "<s>", "</s>", "<unk>", "<|user|>", "<|assistant|>", "<|end|>"]
TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
            "{% if add_generation_prompt %}<|assistant|> {% endif %}")


def words(lang: str) -> list[str]:
    """lang's surface tokens: items, number words, task words, `is` and the full stop."""
    x = lang.lower()
    return [*(f"{x}{i:02d}" for i in range(ITEMS)), *(f"{x}#{n}" for n in range(1, 8)), *(f"{x}{t[0]}" for t in TASKS), f"{x}i", f"{x}."]


VOCAB = [*SPECIAL, *words("a"), *words("b")]
ID = {token: i for i, token in enumerate(VOCAB)}
LANG_OF = {ID[t]: lang for lang in "ab" for t in words(lang)}


@dataclass(frozen=True)
class Task:
    name: str
    items: tuple[int, ...]

    def answer(self) -> list:
        """The answer as items (ints) or a number word (('#', n))."""
        if self.name == "copy":
            return list(self.items)
        if self.name == "reverse":
            return list(reversed(self.items))
        if self.name == "last":
            return [self.items[-1]]
        if self.name == "sort":
            return sorted(self.items)
        return [("#", len(self.items))]

    def instruction(self, lang: str) -> list[str]:
        return [f"{lang}{self.name[0]}", *(f"{lang}{i:02d}" for i in self.items)]

    def reply(self, lang: str) -> list[str]:
        return [f"{lang}#{a[1]}" if isinstance(a, tuple) else f"{lang}{a:02d}" for a in self.answer()]


def random_task(rng: random.Random) -> Task:
    return Task(rng.choice(TASKS), tuple(rng.sample(range(ITEMS), rng.randint(2, 5))))


def held_out(count: int, seed: int) -> list[Task]:
    """Evaluation tasks: item tuples of a hash class that training never samples (see `trainable`)."""
    rng, tasks = random.Random(seed), []
    while len(tasks) < count:
        task = random_task(rng)
        if not trainable(task):
            tasks.append(task)
    return tasks


def trainable(task: Task) -> bool:
    """Four in five item tuples (by a fixed checksum) may appear in training; the fifth is held out."""
    return sum((i + 1) * v for i, v in enumerate(task.items)) % 5 != 0


def plain_text(lang: str, rng: random.Random) -> list[str]:
    """One plain-text statement: the task written out, or a bare list of items (text in general)."""
    task = _train_task(rng)
    if rng.random() < 0.25:
        return ["<s>", *(f"{lang}{i:02d}" for i in task.items), f"{lang}.", "</s>"]
    return ["<s>", *task.instruction(lang), f"{lang}i", *task.reply(lang), f"{lang}.", "</s>"]


def chat_example(lang: str, rng: random.Random) -> tuple[list[str], int]:
    """A chat-template exchange and where the assistant's part starts (only that part is trained)."""
    task = _train_task(rng)
    prompt = ["<s>", "<|user|>", *task.instruction(lang), "<|end|>", "<|assistant|>"]
    return [*prompt, *task.reply(lang), "<|end|>"], len(prompt)


def chat_prompt(task: Task, lang: str) -> list[int]:
    return [ID[t] for t in ["<s>", "<|user|>", *task.instruction(lang), "<|end|>", "<|assistant|>"]]


def _train_task(rng: random.Random) -> Task:
    while True:
        task = random_task(rng)
        if trainable(task):
            return task


def make_config():
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=len(VOCAB), hidden_size=192, intermediate_size=512, num_hidden_layers=4, num_attention_heads=6,
                       num_key_value_heads=6, max_position_embeddings=64, bos_token_id=ID["<s>"], eos_token_id=ID["</s>"],
                       pad_token_id=ID["<pad>"], tie_word_embeddings=False)


def make_tokenizer(chat: bool):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(ID, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(SPECIAL)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="<|end|>" if chat else "</s>", unk_token="<unk>",
                                   pad_token="<pad>", chat_template=TEMPLATE if chat else None)


def batches(make, steps: int, batch_size: int, seed: int):
    """`steps` padded batches of (input ids, labels); `make(rng)` gives (tokens, first trained position)."""
    rng = random.Random(seed)
    for _ in range(steps):
        rows = [make(rng) for _ in range(batch_size)]
        width = max(len(tokens) for tokens, _ in rows)
        ids = torch.full((batch_size, width), ID["<pad>"])
        labels = torch.full((batch_size, width), -100)
        for r, (tokens, start) in enumerate(rows):
            row = torch.tensor([ID[t] for t in tokens])
            ids[r, :len(row)] = row
            labels[r, start:len(row)] = row[start:]
        yield ids, labels


def train(model, data, steps: int, lr: float, log=None) -> float:
    """AdamW with linear warm-up and decay; returns the mean loss of the last 50 steps."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 50) * max(0.05, 1 - s / steps))
    model.train()
    recent = []
    for step, (ids, labels) in enumerate(data):
        loss = model(input_ids=ids, attention_mask=(ids != ID["<pad>"]).long(), labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        recent = (recent + [loss.item()])[-50:]
        if log and step % 200 == 0:
            log(f"  step {step}/{steps} loss {loss.item():.3f}")
    model.eval()
    return sum(recent) / len(recent)


def save(model, path: Path, chat: bool) -> None:
    from transformers import GenerationConfig

    model.save_pretrained(path)
    make_tokenizer(chat).save_pretrained(path)
    if chat:
        GenerationConfig(bos_token_id=ID["<s>"], eos_token_id=[ID["<|end|>"], ID["</s>"]], pad_token_id=ID["<pad>"]).save_pretrained(path)


@torch.no_grad()
def evaluate(model, tasks: list[Task], lang: str, max_new_tokens: int = 12) -> dict:
    """Greedy replies to `tasks` asked in `lang`: task success (exact answer in lang, then end of turn), the share of
    replies written in lang (most of their language tokens), and the end-of-turn rate."""
    end, stop = ID["<|end|>"], {ID["<|end|>"], ID["</s>"]}
    prompts = [chat_prompt(task, lang) for task in tasks]
    width = max(map(len, prompts))
    ids = torch.tensor([[ID["<pad>"]] * (width - len(p)) + p for p in prompts])
    mask = (ids != ID["<pad>"]).long()
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                         eos_token_id=sorted(stop), pad_token_id=ID["<pad>"])[:, width:].tolist()
    success = in_lang = ended = 0
    for task, row in zip(tasks, out):
        cut = next((i for i, t in enumerate(row) if t in stop), None)
        reply = row if cut is None else row[:cut]
        ended += cut is not None and row[cut] == end
        langs = [LANG_OF[t] for t in reply if t in LANG_OF]
        in_lang += bool(langs) and langs.count(lang) > len(langs) / 2
        success += cut is not None and row[cut] == end and reply == [ID[t] for t in task.reply(lang)]
    n = len(tasks)
    return {"success": success / n, "in_language": in_lang / n, "ended_turn": ended / n}
