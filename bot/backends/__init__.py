"""Video backends (Flow, Veo on Vertex AI) behind one small interface (`base`) and one error hierarchy (`errors`)."""
