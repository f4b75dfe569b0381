"""A synthetic two-language world, tiny Llama models trained in it, and a greedy evaluation.

Languages A (English words) and B (Traditional Chinese words) share one structure: the same 24 items, the same five
tasks and the same sentence forms. Item 7 is `dog` in A and `狗` in B, "reverse" is `reverse` and `反轉`. Plain text
states tasks ("reverse apple dog is dog apple ."); chat data asks them in a chat template and answers in the same
language. A `Variant` says what else the pre-training text holds: statements followed by their translation (aligned),
statements whose words switch language (code-switched), marks both languages write alike (shared), and how much A the
CP's text keeps.
"""
import random
from dataclasses import dataclass
from pathlib import Path

import torch

LANGUAGES = ("a", "b")
TASKS = ("copy", "reverse", "last", "count", "sort")
ITEMS = {"a": "apple banana cherry grape lemon mango orange peach pear melon dog cat horse bird fish cow sheep tiger book chair "
              "door car boat bell".split(),
         "b": "蘋果 香蕉 櫻桃 葡萄 檸檬 芒果 橘子 桃子 梨子 甜瓜 狗 貓 馬 鳥 魚 牛 羊 老虎 書 椅子 門 車 船 鐘".split()}
NUMBERS = {"a": "one two three four five six seven".split(), "b": "一 二 三 四 五 六 七".split()}
TASK_WORDS = {"a": dict(zip(TASKS, TASKS)), "b": dict(zip(TASKS, "複製 反轉 最後 數量 排序".split()))}
MARKS = {"a": ("is", "."), "b": ("是", "。")}  # what separates a task from its answer, and ends a statement
SHARED_MARKS = ("=", ".")  # the same in both languages, as digits and punctuation are in real text
BARE = 0.25  # share of plain-text statements that only list items (text in general, not tasks)
SPECIAL = ["<pad>", "<s>", "</s>", "<unk>", "<|user|>", "<|assistant|>", "<|end|>"]
TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
            "{% if add_generation_prompt %}<|assistant|> {% endif %}")


def words(lang: str) -> list[str]:
    """lang's own surface tokens: items, number words, task words and its marks."""
    return [*ITEMS[lang], *NUMBERS[lang], *TASK_WORDS[lang].values(), *MARKS[lang]]


VOCAB = [*SPECIAL, *words("a"), *words("b"), SHARED_MARKS[0]]  # "." is A's full stop and the shared one
ID = {token: i for i, token in enumerate(VOCAB)}
LANG_OF = {ID[t]: lang for lang in LANGUAGES for t in words(lang) if t not in SHARED_MARKS}


@dataclass(frozen=True)
class Variant:
    """One configuration of the world and its training: each field is an ingredient of the ablation."""
    name: str
    aligned: float = 0.0  # share of pre-training documents that are a statement followed by the same in the other language
    switched: float = 0.0  # share of pre-training statements whose words each take a random language (code-switching)
    shared_marks: bool = False  # "=" and "." instead of is/是 and ./。
    b_share: float = 0.1  # share of monolingual pre-training statements in B
    cp_keeps_a: float = 0.0  # share of A in the CP's continued pre-training, as real CP data keeps some English


VARIANTS = {v.name: v for v in (  # the ablation of issue #28; each is `python -m reproduce --variant NAME`
    Variant("disjoint"),  # no text shared between the languages, no token shared: the world before issue #28
    Variant("shared", shared_marks=True),
    Variant("aligned", aligned=0.3),
    Variant("aligned-shared", aligned=0.3, shared_marks=True),  # the skill transfers at one seed in three
    Variant("switched", switched=0.3),
    Variant("switched-shared", switched=0.3, shared_marks=True),
    Variant("aligned-switched-shared", aligned=0.3, switched=0.3, shared_marks=True),  # the default: the skill transfers
    Variant("switched-shared-cp-keeps-a", switched=0.3, shared_marks=True, cp_keeps_a=0.3),
)}
DEFAULT = "aligned-switched-shared"


@dataclass(frozen=True)
class Task:
    name: str
    items: tuple[int, ...]

    def answer(self) -> list:
        """The answer as item positions in `items` (ints) or a number word (('#', n))."""
        order = range(len(self.items))
        if self.name == "copy":
            return list(order)
        if self.name == "reverse":
            return list(reversed(order))
        if self.name == "last":
            return [len(self.items) - 1]
        if self.name == "sort":
            return sorted(order, key=lambda p: self.items[p])
        return [("#", len(self.items))]

    def statement(self, langs: str) -> tuple[list[str], list[str]]:
        """(instruction, reply): `langs` gives the language of the task word, then of each item; the answer's items keep
        their item's language, a number word takes the task word's."""
        task_lang, item_langs = langs[0], langs[1:]
        item = [ITEMS[lang][i] for lang, i in zip(item_langs, self.items)]
        reply = [NUMBERS[task_lang][a[1] - 1] if isinstance(a, tuple) else item[a] for a in self.answer()]
        return [TASK_WORDS[task_lang][self.name], *item], reply

    def instruction(self, lang: str) -> list[str]:
        return self.statement(lang * (1 + len(self.items)))[0]

    def reply(self, lang: str) -> list[str]:
        return self.statement(lang * (1 + len(self.items)))[1]


def random_task(rng: random.Random) -> Task:
    return Task(rng.choice(TASKS), tuple(rng.sample(range(len(ITEMS["a"])), rng.randint(2, 5))))


def held_out(count: int, seed: int) -> list[Task]:
    """Distinct evaluation tasks: item tuples of a hash class that training never samples (see `trainable`)."""
    rng, tasks = random.Random(seed), {}
    while len(tasks) < count:
        task = random_task(rng)
        if not trainable(task):
            tasks.setdefault(task, None)
    return list(tasks)


def trainable(task: Task) -> bool:
    """Four in five item tuples (by a fixed checksum) may appear in training; the fifth is held out."""
    return sum((i + 1) * v for i, v in enumerate(task.items)) % 5 != 0


def sentence(task: Task, langs: str, variant: Variant, bare: bool) -> list[str]:
    """One plain-text statement in `langs` (see Task.statement): the task written out, or (bare) just its items."""
    separator, stop = SHARED_MARKS if variant.shared_marks else MARKS[langs[0]]
    instruction, reply = task.statement(langs)
    return [*instruction[1:], stop] if bare else [*instruction, separator, *reply, stop]


def plain_text(lang: str, rng: random.Random, variant: Variant) -> list[str]:
    """One monolingual plain-text document."""
    task = _train_task(rng)
    return ["<s>", *sentence(task, lang * (1 + len(task.items)), variant, rng.random() < BARE), "</s>"]


def pretraining_text(rng: random.Random, variant: Variant) -> list[str]:
    """One document of the base's pre-training: aligned, code-switched or monolingual (A dominates, as English does)."""
    draw = rng.random()
    if draw < variant.aligned:
        task, first, bare = _train_task(rng), rng.choice(LANGUAGES), rng.random() < BARE
        pair = [sentence(task, lang * (1 + len(task.items)), variant, bare) for lang in (first, "b" if first == "a" else "a")]
        return ["<s>", *pair[0], *pair[1], "</s>"]
    if draw < variant.aligned + variant.switched:
        task = _train_task(rng)
        langs = "".join(rng.choice(LANGUAGES) for _ in range(1 + len(task.items)))
        return ["<s>", *sentence(task, langs, variant, rng.random() < BARE), "</s>"]
    return plain_text("b" if rng.random() < variant.b_share else "a", rng, variant)


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
    replies written in lang (most of their language tokens), the end-of-turn rate, and the replies themselves."""
    end, stop = ID["<|end|>"], {ID["<|end|>"], ID["</s>"]}
    prompts = [chat_prompt(task, lang) for task in tasks]
    width = max(map(len, prompts))
    ids = torch.tensor([[ID["<pad>"]] * (width - len(p)) + p for p in prompts])
    mask = (ids != ID["<pad>"]).long()
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                         eos_token_id=sorted(stop), pad_token_id=ID["<pad>"])[:, width:].tolist()
    success = in_lang = ended = 0
    replies = []
    for task, row in zip(tasks, out):
        cut = next((i for i, t in enumerate(row) if t in stop), None)
        reply = row if cut is None else row[:cut]
        replies.append(" ".join(VOCAB[t] for t in reply))
        ended += cut is not None and row[cut] == end
        langs = [LANG_OF[t] for t in reply if t in LANG_OF]
        in_lang += bool(langs) and langs.count(lang) > len(langs) / 2
        success += cut is not None and row[cut] == end and reply == [ID[t] for t in task.reply(lang)]
    n = len(tasks)
    return {"success": success / n, "in_language": in_lang / n, "ended_turn": ended / n, "replies": replies}
