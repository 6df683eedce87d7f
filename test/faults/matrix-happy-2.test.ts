import { defineMatrix, MATRIX_SHARES } from './matrix';

// The fault matrix (matrix.ts): the happy run's cells, second half.
defineMatrix(MATRIX_SHARES.happySecondHalf);
