import { defineMatrix, defineSourceChecks, MATRIX_SHARES } from './matrix';

// The fault matrix (matrix.ts): the happy run's cells, first half.
defineSourceChecks();
defineMatrix(MATRIX_SHARES.happyFirstHalf);
