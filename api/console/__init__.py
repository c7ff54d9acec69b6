"""The browser console (CONTRACT §16, docs/console.md): server-rendered pages in Chinese
or English for auditors and treasury, over the API itself (`pages.install`)."""
