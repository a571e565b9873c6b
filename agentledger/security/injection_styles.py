"""Detector patterns for the injection styles beyond plain English instructions.

Each entry is ``(rule name, kind, pattern)``; ``security/injection.py`` turns them into
rules. Kept apart so the list of styles reads in one place:

* ``fake_tool_call``: text shaped like a model's tool call (OpenAI ``tool_calls`` /
  ``function_call`` JSON, ``{"name": ..., "arguments": ...}``, ``<tool_call>`` and
  ``<function_calls>`` markup), which a careless parser or a confused model may act on;
* ``fake_role``: chat messages with a privileged role (``"role": "system"``) or role
  markup (``<system>``) inside data;
* ``foreign_instructions``: overrides and role changes in German, French, Spanish,
  Italian, Portuguese, Dutch, Russian, Chinese and Japanese;
* ``handoff_request``: data asking for the work to be handed, transferred, delegated or
  routed to another agent;
* ``url_exfiltration``: URLs built to carry data out (a query parameter left open, or
  filled with a template, a placeholder or "paste the token here"), and instructions to
  put data into a link;
* ``markdown_image``: an image whose URL has a query string: rendered, it fetches that URL
  with no click, the classic zero-click exfiltration channel.
"""

# ruff: noqa: RUF001  (the patterns are written in the languages they match)

from __future__ import annotations

import re
from typing import Literal

Kind = Literal["instruction", "hidden"]

_I, _M = re.IGNORECASE, re.MULTILINE
_Q = r"[\"']"  # JSON or Python quotes

FOREIGN_HINTS = (
    *("ignor", "vergiss", "vergessen", "missacht", "du bist", "oubli", "tenez", "tu es"),
    *("vous êtes", "olvid", "ahora", "dimentic", "ora sei", "esque", "agora", "negeer"),
    *("vergeet", "игнор", "проигнор", "забуд", "теперь", "忽略", "无视", "忘记", "忽视"),
    *("無視", "从现在", "你现在", "システムプロンプト"),
)
"""Lower-case substrings, one of which any foreign-language pattern's match contains."""


STYLE_PATTERNS: tuple[tuple[str, Kind, re.Pattern[str], tuple[str, ...]], ...] = (
    (
        "fake_tool_call",
        "instruction",
        re.compile(
            rf"{_Q}(?:tool_calls|function_call|tool_use|tool_call)\s*{_Q}\s*:"
            r"|<\s*/?\s*(?:tool_call|tool_use|function_calls?|invoke)\b"
            rf"|\{{\s*{_Q}name{_Q}\s*:\s*{_Q}[A-Za-z_][\w.-]*{_Q}\s*,\s*"
            rf"{_Q}(?:arguments|parameters|args|input){_Q}\s*:",
            _I,
        ),
        ("tool_call", "function_call", "tool_use", "invoke", "function_calls", "name"),
    ),
    (
        "fake_role",
        "instruction",
        re.compile(
            rf"{_Q}role{_Q}\s*:\s*{_Q}(?:system|assistant|developer|tool|function){_Q}"
            r"|<\s*/?\s*(?:system|developer)\s*>",
            _I,
        ),
        ("role", "system", "developer"),
    ),
    (
        "foreign_instructions",
        "instruction",
        re.compile(
            # de
            r"\b(?:ignorier\w*|vergiss|vergessen sie|missachte\w*)\b[^.\n]{0,40}?"
            r"\b(?:anweisungen|regeln|vorgaben|instruktionen|befehle)\b"
            r"|\bdu bist (?:jetzt|nun|ab sofort)\b"
            # fr
            r"|\b(?:ignore[rz]?|oublie[rz]?|ne tenez pas compte)\b[^.\n]{0,40}?"
            r"\b(?:les|vos|tes|toutes|des)\b[^.\n]{0,20}?\b(?:instructions?|consignes?|règles)\b"
            r"|\b(?:tu es|vous êtes) (?:maintenant|désormais)\b"
            # es, it, pt
            r"|\b(?:ignora|ignore|ignoren|olvida|olvide|dimentica|esqueça|esqueca)\b[^.\n]{0,40}?"
            r"\b(?:instrucciones|reglas|indicaciones|istruzioni|regole|instruções|instrucoes"
            r"|regras)\b"
            r"|\b(?:a partir de ahora|desde ahora|de ahora en adelante),? (?:eres|serás)\b"
            r"|\b(?:ora sei|d'ora in poi sei|agora você é|a partir de agora você é)\b"
            # nl
            r"|\b(?:negeer|vergeet)\b[^.\n]{0,40}?\b(?:instructies|regels|opdrachten)\b"
            # ru
            r"|(?:игнорируй|игнорируйте|проигнорируй|забудь|забудьте)[^.\n]{0,40}?"
            r"(?:инструкци|правил|указани|команд)"
            r"|\bтеперь ты\b"
            # zh
            r"|(?:忽略|无视|忘记|忽视|無視)[^。\n]{0,20}?(?:指令|指示|说明|規則|规则|提示)"
            r"|从现在(?:开始|起)[，,]?\s*你|你现在是"
            # ja
            r"|(?:指示|命令|ルール|プロンプト)[^。\n]{0,12}?無視"
            r"|システムプロンプト[^。\n]{0,12}?(?:表示|教え|出力)",
            _I,
        ),
        FOREIGN_HINTS,
    ),
    (
        "handoff_request",
        "instruction",
        re.compile(
            r"\b(?:hand(?:ed|ing)?\s+(?:(?:it|this|that|the)\s+(?:\w+\s+)?)?(?:off|over)"
            r"|transfer(?:red)?\s+(?:control|the\s+(?:task|conversation|ticket|request))"
            r"|delegate\s+(?:this|the|it)\s*(?:task|ticket|request|work)?"
            r"|route\s+(?:this|the|it)\s*(?:conversation|task|ticket|request)?)"
            r"\s+to\s+(?:the\s+)?[\w-]+\s+agent\b"
            rf"|{_Q}handoff{_Q}\s*:\s*\{{",
            _I,
        ),
        ("hand", "transfer", "delegate", "route"),
    ),
    (
        "url_exfiltration",
        "instruction",
        re.compile(
            r"https?://[^\s\"'<>()]*[?&][\w.-]+=(?:[<{\[]|\$\{|%7B|%3C|[^\s&\"']*"
            r"(?:PASTE|INSERT|YOUR_|_HERE)|(?=[\s\"')]|$))"
            r"|\b(?:append|add|include|attach|put|encode)\b[^.\n]{0,60}?"
            r"\b(?:to|in|into)\s+(?:this|the|that)\s+(?:url|link|query(?:\s+string)?|address)\b",
            _I | _M,
        ),
        ("://", "url", "link", "query", "address"),
    ),
    (
        "markdown_image",
        "instruction",
        re.compile(
            r"!\[[^\]\n]*\]\(\s*<?https?://[^\s)]*\?[^\s)]*\)"
            r"|<img\b[^>]*\bsrc\s*=\s*[\"']?https?://[^\"'\s>]*\?",
            _I,
        ),
        ("![", "<img"),
    ),
)
