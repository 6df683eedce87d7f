import { defineMatrix, MATRIX_SHARES } from './matrix';

// The fault matrix (matrix.ts): the cells first found in the rollback and bad-AMI runs.
defineMatrix(MATRIX_SHARES.rollbacks);
