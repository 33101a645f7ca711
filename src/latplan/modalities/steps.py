"""The modalities a whole-patient strategy step may name (plan.json ``strategies[].steps[].modality``).

The twelve lesion modalities (:data:`latplan.modalities.LESION_MODALITIES`, same codes as
:class:`latplan.case.vocabulary.Modality`) plus the whole-patient and pathway steps below.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["StepModality"]


class StepModality(StrEnum):
    """One step of a whole-patient strategy."""

    RESECTION = "resection"                                #: surgical resection of the named lesions
    RFA = "rfa"                                            #: radiofrequency ablation
    MWA = "mwa"                                            #: microwave ablation
    CRYO = "cryo"                                          #: cryoablation
    HIFU = "hifu"                                          #: high-intensity focused ultrasound
    ECT = "ect"                                            #: electrochemotherapy
    IRE = "ire"                                            #: irreversible electroporation
    IBT = "ibt"                                            #: interstitial HDR brachytherapy
    SBRT = "sbrt"                                          #: stereotactic body radiotherapy
    TACE = "tace"                                          #: transarterial chemoembolisation
    TARE = "tare"                                          #: radioembolisation (Y-90)
    HAI = "hai"                                            #: hepatic arterial infusion
    SYSTEMIC = "systemic"                                  #: systemic therapy (chemotherapy, targeted, immune)
    CONVERSION_CHEMOTHERAPY = "conversion_chemotherapy"    #: systemic therapy aiming to make lesions resectable
    PORTAL_VEIN_EMBOLISATION = "portal_vein_embolisation"  #: grow the future liver remnant before resection
    TWO_STAGE_RESECTION = "two_stage_resection"            #: two-stage hepatectomy
    TRANSPLANT_REFERRAL = "transplant_referral"            #: referral to a liver transplant centre
    BEST_SUPPORTIVE_CARE = "best_supportive_care"          #: no tumour-directed therapy
    REFER = "refer"                                        #: refer for a specialist opinion (outside latplan's scope)
