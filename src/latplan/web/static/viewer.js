// Case viewer: loads the surface meshes (GIfTI, RAS mm) and then the image and overlays listed in
// viewer/index.json into niivue. Layer toggles set the overlay opacity; mesh toggles the mesh's
// visibility. Sets on the canvas: data-loaded="1" (or data-error), data-layers (volumes niivue has
// loaded) and data-meshes (meshes niivue has loaded).
(function () {
  "use strict";
  const canvas = document.getElementById("viewer-canvas");
  if (!canvas || !window.niivue) { return; }
  const panel = document.getElementById("viewer-layers");
  const base = canvas.dataset.base;

  function toggle(text, checked, onChange) {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox"; box.checked = checked;
    box.addEventListener("change", function () { onChange(box.checked); });
    label.appendChild(box);
    label.appendChild(document.createTextNode(" " + text));
    panel.appendChild(label);
    return box;
  }

  fetch(canvas.dataset.index, { credentials: "same-origin" })
    .then(function (r) { if (!r.ok) { throw new Error("index " + r.status); } return r.json(); })
    .then(function (index) {
      // radiological convention: the patient's right on the screen's left, as on the reading-room CT;
      // meshes on the 2-D slices: only the part within 1 mm of the slice (an outline), whole in 3-D.
      // Axial only while loading: every load redraws, and the 3-D render of the multiplanar view is
      // the costly part of a redraw without a GPU.
      const nv = new niivue.Niivue({ backColor: [0, 0, 0, 1], show3Dcrosshair: true, isColorbar: false,
                                     isRadiologicalConvention: true, crosshairWidth: 1, meshThicknessOn2D: 1, meshXRay: 0.6,
                                     sliceType: 0 });
      nv.attachToCanvas(canvas);
      const layers = index.layers;
      const meshes = index.meshes || [];
      const vols = layers.map(function (l) {
        return { url: base + l.url, name: l.url, colormap: l.colormap, opacity: l.visible ? l.opacity : 0,
                 cal_min: l.cal_min, cal_max: l.cal_max };
      });
      const meshList = meshes.map(function (m) {
        return { url: base + m.url, name: m.url, rgba255: m.rgba255, opacity: m.opacity, visible: !!m.visible };
      });
      panel.innerHTML = "";
      layers.forEach(function (l, i) {
        if (i === 0) { return; }
        toggle(l.name + " (" + l.kind + ")", !!l.visible, function (on) { nv.setOpacity(i, on ? l.opacity : 0); })
          .dataset.layer = String(i);
      });
      // meshes BEFORE volumes: adding a mesh refreshes every loaded volume's textures (niivue
      // 0.57 setMesh → updateGLVolume), so meshes added first cost nothing extra
      // a mesh that fails to load must not cost the board the volumes: note it and go on
      const meshesLoaded = (meshList.length ? nv.loadMeshes(meshList) : Promise.resolve())
        .catch(function (err) { canvas.dataset.meshError = String(err); });
      return meshesLoaded.then(function () { return nv.loadVolumes(vols); }).then(function () {
        if (meshes.length) {
          const heading = document.createElement("p"); heading.className = "muted small";
          heading.textContent = "surfaces (3-D view)";
          panel.appendChild(heading);
        }
        meshes.forEach(function (m) {
          const loaded = nv.meshes.find(function (x) { return x.name === m.url; });
          if (!loaded) { return; }
          toggle(m.name + " (" + m.kind + " surface)", !!m.visible, function (on) {
            nv.setMeshProperty(loaded.id, "visible", on);
          }).dataset.mesh = m.url;
        });
        nv.setSliceType(nv.sliceTypeMultiplanar);
        canvas.dataset.layers = String(nv.volumes.length);
        canvas.dataset.meshes = String(nv.meshes.length);
        canvas.dataset.loaded = "1";
      });
    })
    .catch(function (err) {
      canvas.dataset.error = String(err);
      panel.innerHTML = "";
      const p = document.createElement("p"); p.className = "error";
      p.textContent = "The viewer could not start (" + err + "); the report below still shows the slices.";
      panel.appendChild(p);
    });
})();
