"""Executes a notebook with nbclient in a real ipykernel (this interpreter's), in the working
directory, then renders it to Markdown for the book and checks the committed rendering is
current (or, with --bless, writes it).

    run_notebook.py NOTEBOOK RENDERED.md [--bless]

The rendering: Markdown cells as they are, code in ```python blocks, printed text in ```text
blocks, frames as their HTML, figures as PNG files in a folder named after RENDERED.md. The
figures are written but not compared (their bytes follow the fonts and the libpng of the
machine); everything the figure shows is in a frame printed beside it, which is compared."""

import base64
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

args = [a for a in sys.argv[1:] if not a.startswith("--")]
bless = "--bless" in sys.argv
notebook, rendered = Path(args[0]), Path(args[1])

nb = nbformat.read(notebook, as_version=4)
NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": "."}}).execute()

figures = rendered.with_suffix("")
out = [
    f"<!-- Rendered from docs/notebooks/{notebook.name}, executed by tests/python_api.rs on a "
    "store the test makes; regenerate with MAGPIPE_BLESS=1. -->\n"
]
images = {}
for i, cell in enumerate(nb.cells):
    if cell.cell_type == "markdown":
        out.append(cell.source.strip() + "\n")
        continue
    out.append("```python\n" + cell.source.strip() + "\n```\n")
    for o in cell.get("outputs", []):
        if o.output_type == "stream":
            out.append("```text\n" + o.text.rstrip() + "\n```\n")
        elif o.output_type == "error":
            sys.exit(f"cell {i} raised {o.ename}: {o.evalue}")
        elif o.output_type in ("execute_result", "display_data"):
            data = o.data
            if "image/png" in data:
                name = f"cell{i}.png"
                images[name] = base64.b64decode(data["image/png"])
                out.append(f"![cell {i}]({figures.name}/{name})\n")
            elif "text/html" in data:
                out.append(data["text/html"].strip() + "\n")
            elif "text/plain" in data:
                out.append("```text\n" + data["text/plain"].rstrip() + "\n```\n")
text = "\n".join(out)
if not images:
    sys.exit("the notebook drew no figure")

if bless:
    rendered.write_text(text)
    figures.mkdir(exist_ok=True)
    for name, png in images.items():
        (figures / name).write_bytes(png)
    print(f"wrote {rendered} and {len(images)} figure(s) in {figures}/", file=sys.stderr)
elif not rendered.exists() or rendered.read_text() != text:
    import difflib

    old = rendered.read_text().splitlines() if rendered.exists() else []
    diff = "\n".join(difflib.unified_diff(old, text.splitlines(), str(rendered), "executed", lineterm=""))
    sys.exit(f"{rendered} is not what the notebook gives now (MAGPIPE_BLESS=1 rewrites it):\n{diff}")
else:
    missing = [n for n in images if not (figures / n).exists()]
    if missing:
        sys.exit(f"figures missing beside {rendered}: {missing} (MAGPIPE_BLESS=1 writes them)")
print("notebook executed", file=sys.stderr)
