"""Video feature learners: the predictive autoencoder (`task.VideoPredictiveTask`) on clips."""
