"""Real faces, prepared once as the paper's Sec. 4.2 does: ``analyser`` (detection, landmarks, alignment,
equalisation and head pose, with dlib and OpenCV from the ``faces`` extra), ``prepare`` (``fsx prepare``: a folder
of photos into the prepared format, resumable and parallel) and ``prepared`` (that format as a data source)."""

from fsx.data.faces.analyser import LEFT_EYE, MOUTH, RIGHT_EYE, TEMPLATE, FaceAnalyser, FacesExtraMissing, Rejected

__all__ = ["LEFT_EYE", "MOUTH", "RIGHT_EYE", "TEMPLATE", "FaceAnalyser", "FacesExtraMissing", "Rejected"]
