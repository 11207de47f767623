// registryd UI: copy buttons and delete confirmations. Loaded from this server only
// (the Content-Security-Policy forbids inline scripts); pages work without it.
"use strict";

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  const text = source.textContent;
  const done = (label) => {
    button.textContent = label;
    setTimeout(() => { button.textContent = "copy"; }, 2000);
  };
  // Without clipboard access (plain HTTP to a remote host), select it for Ctrl+C.
  const fallback = () => { selectText(source); done("selected"); };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(() => done("copied"), fallback);
  } else {
    fallback();
  }
});

function selectText(element) {
  const range = document.createRange();
  range.selectNodeContents(element);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

document.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
});
