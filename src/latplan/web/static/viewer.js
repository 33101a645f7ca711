// Case viewer: loads the surface meshes (GIfTI, RAS mm) and then the image and overlays listed in
// viewer/index.json into niivue. Layer toggles set the overlay opacity; mesh toggles the mesh's
// visibility. Sets on the canvas: data-loaded="1" (or data-error), data-layers (volumes niivue has
// loaded) and data-meshes (meshes niivue has loaded).
// Lesions (index.lesions, centres in LPS mm): the viewer opens at the first one; one button per
// lesion moves the crosshair (every 2-D view's slice, and the 3-D crosshair) to it. The crosshair's
// voxel index on the image grid (NIfTI i, j, k: sagittal, coronal, axial slice) is shown in
// #viewer-slice and set on the canvas as data-slice="i,j,k"; data-lesion names the lesion shown.
// A zone's toggles (the volume and its surface) go together: on shows the zone filled on the 2-D
// views and as a surface in 3-D (its outline on the slices), off hides both.
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

  // LPS mm → RAS mm (NIfTI world) and RAS mm ↔ voxel index with the image's own affine (rows)
  function lpsToRas(p) { return [-p[0], -p[1], p[2]]; }
  function invertAffine(a) {
    const m = [[a[0][0], a[0][1], a[0][2]], [a[1][0], a[1][1], a[1][2]], [a[2][0], a[2][1], a[2][2]]];
    const t = [a[0][3], a[1][3], a[2][3]];
    const det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
      + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    const inv = [[(m[1][1] * m[2][2] - m[1][2] * m[2][1]) / det, (m[0][2] * m[2][1] - m[0][1] * m[2][2]) / det,
                  (m[0][1] * m[1][2] - m[0][2] * m[1][1]) / det],
                 [(m[1][2] * m[2][0] - m[1][0] * m[2][2]) / det, (m[0][0] * m[2][2] - m[0][2] * m[2][0]) / det,
                  (m[0][2] * m[1][0] - m[0][0] * m[1][2]) / det],
                 [(m[1][0] * m[2][1] - m[1][1] * m[2][0]) / det, (m[0][1] * m[2][0] - m[0][0] * m[2][1]) / det,
                  (m[0][0] * m[1][1] - m[0][1] * m[1][0]) / det]];
    return function (p) {
      const d = [p[0] - t[0], p[1] - t[1], p[2] - t[2]];
      return inv.map(function (r) { return r[0] * d[0] + r[1] * d[1] + r[2] * d[2]; });
    };
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
          heading.textContent = "surfaces (3-D view; zones also outlined on the slices)";
          panel.appendChild(heading);
        }
        meshes.forEach(function (m) {
          const loaded = nv.meshes.find(function (x) { return x.name === m.url; });
          if (!loaded) { return; }
          toggle(m.name + " (" + m.kind + " surface)", !!m.visible, function (on) {
            nv.setMeshProperty(loaded.id, "visible", on);
          }).dataset.mesh = m.url;
        });
        // zones: the volume toggle and the surface toggle of one zone switch together
        layers.forEach(function (l, i) {
          if (l.kind !== "zone") { return; }
          const m = meshes.find(function (x) { return x.kind === "zone" && x.lesion_id === l.lesion_id && x.modality === l.modality; });
          const loaded = m && nv.meshes.find(function (x) { return x.name === m.url; });
          const volBox = panel.querySelector('input[data-layer="' + i + '"]');
          const meshBox = m && panel.querySelector('input[data-mesh="' + m.url + '"]');
          if (!volBox) { return; }
          volBox.dataset.zone = l.lesion_id + " " + l.modality;
          function setZone(on) {
            nv.setOpacity(i, on ? l.opacity : 0);
            volBox.checked = on;
            if (loaded) { nv.setMeshProperty(loaded.id, "visible", on); }
            if (meshBox) { meshBox.checked = on; }
          }
          volBox.addEventListener("change", function () { setZone(volBox.checked); });
          if (meshBox) { meshBox.addEventListener("change", function () { setZone(meshBox.checked); }); }
        });
        const toVox = invertAffine(nv.volumes[0].hdr.affine);
        const sliceText = document.getElementById("viewer-slice");
        function showSlice() {
          const v = toVox(nv.frac2mm(nv.scene.crosshairPos)).map(function (x) { return Math.round(x); });
          canvas.dataset.slice = v.join(",");
          if (sliceText) { sliceText.textContent = "slice: sagittal " + v[0] + " · coronal " + v[1] + " · axial " + v[2]; }
        }
        nv.onLocationChange = showSlice;
        const lesionBox = document.getElementById("viewer-lesions");
        function goTo(le) {
          nv.scene.crosshairPos = nv.mm2frac(lpsToRas(le.centre_lps_mm));
          nv.updateGLVolume();
          nv.drawScene();
          canvas.dataset.lesion = le.id;
          if (lesionBox) {
            lesionBox.querySelectorAll("button").forEach(function (b) {
              b.setAttribute("aria-pressed", b.dataset.lesion === le.id ? "true" : "false");
            });
          }
          showSlice();
        }
        const lesions = index.lesions || [];
        if (lesionBox) {
          lesionBox.innerHTML = "";
          lesions.forEach(function (le) {
            const b = document.createElement("button");
            b.type = "button"; b.className = "lesion-goto"; b.dataset.lesion = le.id;
            b.textContent = le.label || le.id;
            b.addEventListener("click", function () { goTo(le); });
            lesionBox.appendChild(b);
          });
        }
        nv.setSliceType(nv.sliceTypeMultiplanar);
        if (lesions.length) { goTo(lesions[0]); } else { showSlice(); }
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
