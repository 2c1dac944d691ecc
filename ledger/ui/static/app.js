// The ledger page's only script: computes a dropped or chosen file's
// SHA-256 in the browser (the file is never uploaded) and looks the
// digest up by navigating to /?digest=sha256:<hex>.
"use strict";
(function () {
  const drop = document.getElementById("drop");
  const input = document.getElementById("file");
  const out = document.getElementById("computed");
  if (!drop || !input || !out) return;

  async function digestFile(file) {
    if (!window.crypto || !window.crypto.subtle) {
      out.textContent = "This browser cannot compute SHA-256 here (it needs a secure context).";
      return;
    }
    out.textContent = "Computing the SHA-256 of " + file.name + "…";
    const buf = await file.arrayBuffer();
    const sum = new Uint8Array(await window.crypto.subtle.digest("SHA-256", buf));
    let hex = "";
    for (const b of sum) hex += b.toString(16).padStart(2, "0");
    const d = "sha256:" + hex;
    out.textContent = file.name + ": " + d;
    out.dataset.digest = d;
    window.location.assign("/?digest=" + encodeURIComponent(d));
  }

  function fail(err) { out.textContent = "Could not read the file: " + err; }

  input.addEventListener("change", function () {
    if (input.files && input.files.length > 0) digestFile(input.files[0]).catch(fail);
  });
  drop.addEventListener("dragover", function (e) { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", function () { drop.classList.remove("over"); });
  drop.addEventListener("drop", function (e) {
    e.preventDefault();
    drop.classList.remove("over");
    const files = e.dataTransfer && e.dataTransfer.files;
    if (files && files.length > 0) digestFile(files[0]).catch(fail);
  });
})();
