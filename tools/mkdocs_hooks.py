"""MkDocs hooks for the jaxmg site (mkdocs.yml, ``hooks:``).

- The home page is README.md: docs/index.md holds only a placeholder, replaced here by the
  README's text with its ``docs/...`` links made relative to the docs folder, so the README
  stays the one copy of that text (and tests/python/test_docs_examples.py runs its example
  once).
- Importing jaxmg for the API reference needs no device, but a machine with GPUs and no
  CUDA setup should not be touched: JAX is kept on CPU while the site is built.
"""

import os
import re

os.environ.setdefault("JAX_PLATFORMS", "cpu")

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PLACEHOLDER = "<!-- the README, inserted by tools/mkdocs_hooks.py -->"


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri != "index.md" or _PLACEHOLDER not in markdown:
        return markdown
    with open(os.path.join(_ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    readme = re.sub(r"\]\(docs/", "](", readme)           # [x](docs/a.md) -> [x](a.md)
    return markdown.replace(_PLACEHOLDER, readme)
