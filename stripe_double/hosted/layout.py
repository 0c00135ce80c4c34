"""A plain, accessible HTML layout: no scripts, no external resources."""

from __future__ import annotations

from html import escape

from stripe_double import money

STYLE = """
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#1a1a1a;background:#f6f8fa}
main{max-width:30rem;margin:0 auto;padding:1.5rem 1rem 3rem}
h1{font-size:1.5rem;margin:.5rem 0 1rem}
h2{font-size:1.125rem;margin:1.5rem 0 .5rem}
.badge{display:inline-block;margin:0;padding:.125rem .5rem;border-radius:.25rem;
background:#fff3cd;color:#5c4400;font-size:.875rem;font-weight:600}
table{width:100%;border-collapse:collapse;background:#fff}
th,td{padding:.5rem;border-bottom:1px solid #d0d7de;text-align:left}
td.num,th.num{text-align:right}
form{margin-top:1rem;padding:1rem;background:#fff;border:1px solid #d0d7de;border-radius:.5rem}
label{display:block;margin-top:1rem;font-weight:600}
label:first-child{margin-top:0}
input{display:block;width:100%;margin-top:.25rem;padding:.625rem;font:inherit;color:#1a1a1a;
background:#fff;border:1px solid #57606a;border-radius:.375rem}
input[aria-invalid=true]{border:2px solid #b3261e}
.hint{margin:.25rem 0 0;color:#4a5058;font-size:.875rem}
.field-error{margin:.25rem 0 0;color:#b3261e;font-weight:600;font-size:.875rem}
.error{margin:1rem 0 0;padding:.75rem;border:2px solid #b3261e;border-radius:.375rem;
background:#fff;color:#8c1d18}
button{display:inline-block;margin-top:1.25rem;padding:.75rem 1.25rem;font:inherit;font-weight:600;
color:#fff;background:#0a5bd3;border:0;border-radius:.375rem;cursor:pointer;min-height:44px}
button.secondary{color:#1a1a1a;background:#e4e7eb}
button:focus-visible,input:focus-visible,a:focus-visible,summary:focus-visible{
outline:3px solid #1a1a1a;outline-offset:2px}
a{color:#0a4fb8}
details{margin-top:1.5rem}
"""


def page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def amount(value: int, currency: str) -> str:
    return f"{currency.upper()} {money.format_amount(value, currency)}"


def notice(title: str, message: str, link: tuple[str, str] | None = None) -> str:
    body = f'<p class="badge">Test mode</p>\n<h1>{escape(title)}</h1>\n<p>{escape(message)}</p>'
    if link:
        body += f'\n<p><a href="{escape(link[0])}">{escape(link[1])}</a></p>'
    return page(title, body)
