// Case viewer: loads the image and overlays listed in viewer/index.json into niivue.
// Layer toggles set the overlay opacity. Sets data-loaded="1" (or data-error) on the canvas.
(function () {
  "use strict";
  const canvas = document.getElementById("viewer-canvas");
  if (!canvas || !window.niivue) { return; }
  const panel = document.getElementById("viewer-layers");
  const base = canvas.dataset.base;
  fetch(canvas.dataset.index, { credentials: "same-origin" })
    .then(function (r) { if (!r.ok) { throw new Error("index " + r.status); } return r.json(); })
    .then(function (index) {
      // radiological convention: the patient's right on the screen's left, as on the reading-room CT
      const nv = new niivue.Niivue({ backColor: [0, 0, 0, 1], show3Dcrosshair: true, isColorbar: false,
                                     isRadiologicalConvention: true, crosshairWidth: 1 });
      nv.attachToCanvas(canvas);
      const layers = index.layers;
      const vols = layers.map(function (l) {
        return { url: base + l.url, name: l.url, colormap: l.colormap, opacity: l.visible ? l.opacity : 0,
                 cal_min: l.cal_min, cal_max: l.cal_max };
      });
      panel.innerHTML = "";
      layers.forEach(function (l, i) {
        if (i === 0) { return; }
        const label = document.createElement("label");
        const box = document.createElement("input");
        box.type = "checkbox"; box.checked = !!l.visible; box.dataset.layer = String(i);
        box.addEventListener("change", function () { nv.setOpacity(i, box.checked ? l.opacity : 0); });
        label.appendChild(box);
        label.appendChild(document.createTextNode(" " + l.name + " (" + l.kind + ")"));
        panel.appendChild(label);
      });
      canvas.dataset.layers = String(layers.length);
      return nv.loadVolumes(vols).then(function () { nv.setSliceType(nv.sliceTypeMultiplanar); canvas.dataset.loaded = "1"; });
    })
    .catch(function (err) {
      canvas.dataset.error = String(err);
      panel.innerHTML = "";
      const p = document.createElement("p"); p.className = "error";
      p.textContent = "The viewer could not start (" + err + "); the report below still shows the slices.";
      panel.appendChild(p);
    });
})();
