"""The Gradio chat UI: an OpenAI-API client of the gateway (it never touches the model directly).

Upload or record a video and/or audio clip, chat with streaming, see each expert tool call as a
collapsible step, preview the de-identified media the model saw, and a chart of the expression
probabilities over time (from the facial-expression expert) and of the experts' events.

    python -m deemo_llama.serving.ui --gateway http://127.0.0.1:8000/v1   (or: deemo serve)
"""

from __future__ import annotations

import base64
import mimetypes
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from background threads

EMOTION_COLOURS = {"angry": "#d62728", "disgust": "#8c564b", "fear": "#9467bd", "happy": "#2ca02c", "sad": "#1f77b4", "surprise": "#ff7f0e", "neutral": "#7f7f7f"}


def _data_url(path: str) -> str:
    mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode()}"


def user_content(text: str, video: str | None, audio: str | None) -> list[dict] | str:
    """The latest user turn as OpenAI content parts (the media travel as data URLs)."""
    parts: list[dict] = []
    if video:
        parts.append({"type": "video_url", "video_url": {"url": _data_url(video)}})
    if audio:
        fmt = Path(audio).suffix.lstrip(".").lower() or "wav"
        parts.append({"type": "input_audio", "input_audio": {"data": base64.b64encode(Path(audio).read_bytes()).decode(), "format": fmt}})
    if not parts:
        return text
    return parts + [{"type": "text", "text": text}]


def _save_data_url(url: str, out_dir: Path, stem: str) -> str:
    header, _, payload = url.partition(",")
    ext = mimetypes.guess_extension(header[5:].split(";")[0]) or ".bin"
    path = out_dir / f"{stem}{ext}"
    path.write_bytes(base64.b64decode(payload))
    return str(path)


def estimates_figure(steps: list[dict]):
    """Expression probabilities over time (face expert) with the other experts' events as spans."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    plotted = False
    for s in steps:
        result = s.get("result") or {}
        series = (result.get("details") or {}).get("series", {}).get("probabilities")
        if series:
            t = series["t_s"]
            for label, colour in EMOTION_COLOURS.items():
                if label in series:
                    ax.plot(t, [float("nan") if v is None else v for v in series[label]], label=label, color=colour)
            plotted = True
    spans = [(e, s["name"]) for s in steps for e in ((s.get("result") or {}).get("events") or []) if "start_s" in e and "end_s" in e and s["name"] != "analyze_facial_expression"]
    for k, (e, name) in enumerate(spans[:20]):
        ax.axvspan(e["start_s"], e["end_s"], alpha=0.12, color="black")
        ax.text(e["start_s"], 0.95 - 0.07 * (k % 3), f"{e.get('kind') or e.get('type')}", fontsize=7, transform=ax.get_xaxis_transform())
    if not plotted and not spans:
        ax.text(0.5, 0.5, "no expert estimates yet (send a clip)", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        ax.set_xlabel("time (s)")
        ax.set_ylabel("expression probability")
        ax.set_ylim(-0.03, 1.03)
        if plotted:
            ax.legend(fontsize=7, ncol=1, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def respond(client, model: str, text: str, video: str | None, audio: str | None, experts: str, history: list[dict], convo: list[dict]) -> Iterator[tuple[Any, ...]]:
    """One chat turn, streamed: yields (chatbot history, preview video, preview audio, figure, convo)."""
    from gradio import ChatMessage

    scratch = Path(tempfile.mkdtemp(prefix="deemo-ui-"))
    history = list(history) + [ChatMessage(role="user", content=text or "(clip)")]
    messages = list(convo) + [{"role": "user", "content": user_content(text or "How does the person feel, and why?", video, audio)}]
    preview_video = preview_audio = None
    steps: list[dict] = []
    answer = ChatMessage(role="assistant", content="")
    history.append(answer)
    yield history, preview_video, preview_audio, None, convo
    # greedy with a mild frequency penalty: small models otherwise loop on one sentence
    stream = client.chat.completions.create(model=model, messages=messages, stream=True, max_tokens=200, temperature=0, frequency_penalty=0.5, extra_body={"deemo": {"experts": experts, "return_media": True}})
    for chunk in stream:
        ext = (chunk.model_extra or {}).get("deemo") or {}
        if "error" in (chunk.model_extra or {}):
            answer.content += f"\n\n**error:** {chunk.model_extra['error']['message']}"
        for m in ext.get("deidentified_media", []):
            saved = _save_data_url(m["url"], scratch, m["kind"])
            if m["kind"] == "video":
                preview_video = saved
            else:
                preview_audio = saved
        if "tool_step" in ext:
            s = ext["tool_step"]
            steps.append(s)
            # a collapsible step, shown before the answer
            history.insert(len(history) - 1, ChatMessage(role="assistant", content=s["summary"], metadata={"title": f"tool {s['name']} ({s['status']}, {s['seconds']:.1f} s{', cached' if s.get('cached') else ''})", "status": "done"}))
        if chunk.choices and chunk.choices[0].delta.content:
            answer.content += chunk.choices[0].delta.content
        yield history, preview_video, preview_audio, None, convo
    convo = list(convo) + [{"role": "user", "content": text or "How does the person feel, and why?"}, {"role": "assistant", "content": answer.content}]
    yield history, preview_video, preview_audio, estimates_figure(steps), convo


def build_ui(gateway_url: str, model: str = "deemo", api_key: str | None = None):
    """The Blocks app; launch with ``.launch()`` or mount it."""
    import gradio as gr
    from openai import OpenAI

    client = OpenAI(base_url=gateway_url, api_key=api_key or "unused", timeout=600, max_retries=0)
    with gr.Blocks(title="DEEMO: de-identified emotion understanding") as demo:
        gr.Markdown("## DEEMO\nEmotion understanding from **de-identified** video and audio: faces are blurred and voices anonymised before the model sees them; expert tools read the raw clip inside the privacy boundary and report only descriptors.")
        convo = gr.State([])
        with gr.Row():
            with gr.Column(scale=2):
                video = gr.Video(label="Video clip (upload or record)", sources=["upload", "webcam"], elem_id="deemo-video")
                audio = gr.Audio(label="Audio clip (upload or record)", sources=["upload", "microphone"], type="filepath", elem_id="deemo-audio")
                experts = gr.Radio(["context", "tools", "none"], value="context", label="Expert tools", info="context: the experts' findings go into the prompt; tools: the model calls them; none: off")
                with gr.Accordion("What the model saw (de-identified)", open=True):
                    seen_video = gr.Video(label="de-identified video", interactive=False, elem_id="deemo-seen-video")
                    seen_audio = gr.Audio(label="anonymised audio", interactive=False, type="filepath")
            with gr.Column(scale=3):
                chat = gr.Chatbot(label="DEEMO", height=460, elem_id="deemo-chat")
                text = gr.Textbox(label="Message", placeholder="How does the person feel, and why?", elem_id="deemo-text")
                send = gr.Button("Send", variant="primary", elem_id="deemo-send")
                plot = gr.Plot(label="Expression and emotion estimates", elem_id="deemo-plot")

        def turn(message, vid, aud, mode, history, state):
            yield from ((h, v, a, f, c, "") for h, v, a, f, c in respond(client, model, message, vid, aud, mode, history, state))

        outputs = [chat, seen_video, seen_audio, plot, convo, text]
        send.click(turn, [text, video, audio, experts, chat, convo], outputs)
        text.submit(turn, [text, video, audio, experts, chat, convo], outputs)
    return demo


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gateway", default="http://127.0.0.1:8000/v1")
    ap.add_argument("--model", default="deemo")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7860)
    args = ap.parse_args()
    build_ui(args.gateway, args.model, os.environ.get("DEEMO_API_KEY")).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
