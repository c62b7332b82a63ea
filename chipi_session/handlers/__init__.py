"""Effect handlers: the work the session core asks for, one module per kind of effect
(docs/architecture.md, "Module map"). ``ChipiSession`` stays the facade and hands each
handler what it needs explicitly."""
