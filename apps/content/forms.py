from __future__ import annotations

from typing import Any

from django import forms

from .models import MAX_TOKENS_LIMIT, PROMPT_MAX_CHARS, STOP_SEQUENCE_MAX_CHARS, STOP_SEQUENCES_MAX, TOP_P_MIN


class GenerationForm(forms.Form):
    prompt = forms.CharField(
        max_length=PROMPT_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 6, "placeholder": "Describe what you want written...", "autofocus": True}),
        strip=True,
    )
    max_tokens = forms.IntegerField(min_value=1, max_value=MAX_TOKENS_LIMIT, initial=200, label="Max tokens")
    temperature = forms.FloatField(min_value=0.0, max_value=2.0, initial=0.8)
    top_p = forms.FloatField(min_value=TOP_P_MIN, max_value=1.0, initial=0.95, label="Top p")
    seed = forms.IntegerField(
        min_value=0, max_value=2**63 - 1, required=False, help_text="Optional, for repeatable output."
    )
    stop = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "One stop sequence per line"}),
        help_text=f"Up to {STOP_SEQUENCES_MAX}, each at most {STOP_SEQUENCE_MAX_CHARS} characters.",
        strip=False,
    )

    def clean_stop(self) -> list[str]:
        raw: str = self.cleaned_data.get("stop") or ""
        sequences = [line for line in raw.splitlines() if line.strip()]
        if len(sequences) > STOP_SEQUENCES_MAX:
            raise forms.ValidationError(f"At most {STOP_SEQUENCES_MAX} stop sequences; you gave {len(sequences)}.")
        for item in sequences:
            if len(item) > STOP_SEQUENCE_MAX_CHARS:
                raise forms.ValidationError(
                    f"Stop sequence {item[:40]!r} is longer than {STOP_SEQUENCE_MAX_CHARS} characters."
                )
        return sequences

    def generation_kwargs(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {key: data[key] for key in ("prompt", "max_tokens", "temperature", "top_p", "seed", "stop")}
