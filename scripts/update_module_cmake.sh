#!/usr/bin/env bash
# Regenerate SegmentAI/CMakeLists.txt from the files on disk: every .py of the module and its
# packages, every module resource and every shared top-level resource. Run after adding files;
# Testing/Python/test_slicer_module_static.py fails until the lists match.
set -euo pipefail
cd "$(dirname "$0")/.."
{
cat <<'EOF'
#-----------------------------------------------------------------------------
set(MODULE_NAME SegmentAI)

#-----------------------------------------------------------------------------
# Every Python file of the module and of its packages (checked by Testing/Python/test_slicer_module_static.py).
set(MODULE_PYTHON_SCRIPTS
  ${MODULE_NAME}.py
EOF
(cd SegmentAI && find SegmentAILib segmentai_core segmentai_mrml segmentai_web -name "*.py" -not -path "*/__pycache__/*" | LC_ALL=C sort | sed 's/^/  /')
cat <<'EOF'
  )

# Resources of the module itself, copied beside the scripts (Resources/...).
set(MODULE_PYTHON_RESOURCES
  Resources/Icons/${MODULE_NAME}.png
  Resources/UI/${MODULE_NAME}.ui
  Resources/requirements.txt
  )

# Resources shared with the command line and the web app, kept in the repository's top-level
# Resources/ folder; they land in the module's Resources/ folder, where segmentai_core looks for them.
set(SEGMENTAI_SHARED_RESOURCES
EOF
(cd Resources && find . -type f | sed 's|^\./||' | LC_ALL=C sort | sed 's/^/  /')
cat <<'EOF'
  )

#-----------------------------------------------------------------------------
slicerMacroBuildScriptedModule(
  NAME ${MODULE_NAME}
  SCRIPTS ${MODULE_PYTHON_SCRIPTS}
  RESOURCES ${MODULE_PYTHON_RESOURCES}
  WITH_GENERIC_TESTS
  )

foreach(resource ${SEGMENTAI_SHARED_RESOURCES})
  get_filename_component(resource_dir ${resource} DIRECTORY)
  configure_file(
    ${CMAKE_CURRENT_SOURCE_DIR}/../Resources/${resource}
    ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}/Resources/${resource}
    COPYONLY
    )
  install(
    FILES ${CMAKE_CURRENT_SOURCE_DIR}/../Resources/${resource}
    DESTINATION ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/Resources/${resource_dir}
    COMPONENT RuntimeLibraries
    )
endforeach()

#-----------------------------------------------------------------------------
if(BUILD_TESTING)
  # SegmentAITest.runTest() runs the shared MRML-layer cases (segmentai_mrml/tests/cases.py) and the workflow.
  slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)
endif()
EOF
} > SegmentAI/CMakeLists.txt
