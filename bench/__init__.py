"""`make bench`: speed goals measured against ceilings taken in the same run."""
