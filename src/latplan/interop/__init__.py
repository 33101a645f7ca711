"""latplan.interop: exchange formats for other systems — the HL7 FHIR R4 bundle with mCODE profile
claims (:mod:`latplan.interop.fhir`) and its offline profile check (:mod:`latplan.interop.fhir_profiles`),
the board's JSON export and DICOM SEG (:mod:`latplan.interop.exports`).

It knows nothing of the web app; the web routers call it.
"""
